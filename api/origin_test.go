package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRefuseCrossOrigin(t *testing.T) {
	h := RefuseCrossOrigin(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	tests := []struct {
		name, method string
		headers      map[string]string
		code         int
	}{
		{"fleetctl: no browser headers", "DELETE", nil, 204},
		{"the dashboard itself", "PUT", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "https://fleet.example:49153"}, 204},
		{"a typed URL or bookmark", "POST", map[string]string{"Sec-Fetch-Site": "none"}, 204},
		{"another site's page", "POST", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, 403},
		{"another site, older browser", "POST", map[string]string{"Origin": "https://evil.example"}, 403},
		{"another site may read", "GET", map[string]string{"Sec-Fetch-Site": "cross-site"}, 204},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "https://fleet.example:49153/fleet/v1/units/x.service", nil)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			require.Equal(t, tt.code, w.Code, w.Body.String())
			if tt.code == 403 {
				var e errorBody
				require.NoError(t, json.Unmarshal(w.Body.Bytes(), &e))
				require.Contains(t, e.Error.Message, "from another site")
			}
		})
	}
}
