package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// fuzzServer is the API over a real etcd, for fuzz targets.
func fuzzServer(f *testing.F) http.Handler {
	e := etcdtest.Start(f)
	return api.NewServer(api.NewRegistryClient(registry.New(e.Client(f), registry.WithPrefix("/fuzz/"))))
}

// checkAnswer fails unless the answer's code is one of codes and an error
// answer has fleet's error shape with the same code.
func checkAnswer(t *testing.T, w *httptest.ResponseRecorder, codes ...int) {
	t.Helper()
	if !slices.Contains(codes, w.Code) {
		t.Fatalf("status %d (want one of %v): %s", w.Code, codes, w.Body)
	}
	if w.Code < 400 {
		return
	}
	var e struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error.Code != w.Code || e.Error.Message == "" {
		t.Fatalf("error answer %d not in fleet's shape (%v): %s", w.Code, err, w.Body)
	}
}

func FuzzPutUnitBody(f *testing.F) {
	for _, seed := range []string{
		helloJSON,
		`{"desiredState":"launched"}`,
		`{"name":"fuzz.service","desiredState":"loaded","options":[{"section":"X-Fleet","name":"Global","value":"true"}]}`,
		`{"name":"other.service"}`,
		`{"options":[{"section":"Service","name":"ExecStart"}]}`,
		`{"options":null,"desiredState":"nope"}`,
		`[]`,
		``,
	} {
		f.Add(seed)
	}
	h := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("PUT", "/fleet/v1/units/fuzz.service", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		checkAnswer(t, w, http.StatusCreated, http.StatusNoContent, http.StatusBadRequest, http.StatusNotFound,
			http.StatusConflict, http.StatusRequestEntityTooLarge)
		if w.Code == http.StatusCreated {
			// What was accepted reads back, and goes so the next input
			// may create it again.
			get := httptest.NewRecorder()
			h.ServeHTTP(get, httptest.NewRequest("GET", "/fleet/v1/units/fuzz.service", nil))
			checkAnswer(t, get, http.StatusOK)
			del := httptest.NewRecorder()
			h.ServeHTTP(del, httptest.NewRequest("DELETE", "/fleet/v1/units/fuzz.service", nil))
			checkAnswer(t, del, http.StatusNoContent)
		}
	})
}

func FuzzPatchMachinesBody(f *testing.F) {
	for _, seed := range []string{
		`[{"op":"add","path":"/m1/metadata/role","value":"web"}]`,
		`[{"op":"replace","path":"/m1/metadata/role","value":{"value":"db"}}]`,
		`[{"op":"remove","path":"/m1/metadata/role"}]`,
		`[{"op":"add","path":"/m1/metadata/","value":"x"}]`,
		`[{"op":"move","path":"/m1/metadata/a","value":"x"}]`,
		`[]`,
		`{}`,
		`null`,
	} {
		f.Add(seed)
	}
	h := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("PATCH", "/fleet/v1/machines", strings.NewReader(body))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		checkAnswer(t, w, http.StatusNoContent, http.StatusBadRequest, http.StatusRequestEntityTooLarge)
	})
}
