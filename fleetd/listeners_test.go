package fleetd

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestListenersOutliveServers checks what a reload relies on: a listener of
// Listen stays open when the server on it shuts down, a request made while
// no server runs waits instead of being refused, and the next server on the
// same listener answers it.
func TestListenersOutliveServers(t *testing.T) {
	cfg := DefaultConfig()
	cfg.APISocket = filepath.Join(t.TempDir(), "fleet.sock")
	cfg.APIListen = "127.0.0.1:0"
	ls, err := Listen(cfg)
	require.NoError(t, err)
	require.Len(t, ls, 2)
	defer func() { require.NoError(t, CloseListeners(ls)) }()
	tcp := ls[1]

	serve := func(body string) (stop func()) {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body) })}
		for _, l := range ls {
			require.NoError(t, l.(keptListener).serve())
		}
		done := make(chan error, len(ls))
		for _, l := range ls {
			go func() { done <- srv.Serve(l) }()
		}
		return func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			require.NoError(t, srv.Shutdown(ctx))
			for range ls {
				require.ErrorIs(t, <-done, http.ErrServerClosed)
			}
		}
	}
	get := func() (string, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + tcp.Addr().String())
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}

	stop := serve("first")
	got, err := get()
	require.NoError(t, err)
	require.Equal(t, "first", got)
	stop()

	// Nothing serves now: the request waits in the backlog.
	answer := make(chan string, 1)
	go func() {
		got, err := get()
		if err != nil {
			got = err.Error()
		}
		answer <- got
	}()
	time.Sleep(200 * time.Millisecond)
	stop = serve("second")
	defer stop()
	require.Equal(t, "second", <-answer)
	require.FileExists(t, cfg.APISocket, "the unix socket stays")
}
