package appliance

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

// TestWebhookBoundHoldsUnderParallelCreates: creates racing for a
// workspace's last slots cannot take it past MaxWebhooksPerWorkspace (the
// count and the insert were separate steps, and 30 parallel creates at 48
// made 51 or 52), and another workspace keeps its own bound.
func TestWebhookBoundHoldsUnderParallelCreates(t *testing.T) {
	app := openApp(t, fastSandbox(), true)
	if _, err := app.CreateWorkspace("other", 0); err != nil {
		t.Fatal(err)
	}

	url := func(ws string, i int) string { return fmt.Sprintf("https://example.com/%s/%d", ws, i) }
	for i := range MaxWebhooksPerWorkspace - 2 {
		if _, _, err := app.CreateWebhook(DefaultWorkspace, url("seq", i), []string{"*"}); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	const racers = 30
	var wg sync.WaitGroup
	errs := make([]error, 2*racers)
	for i := range 2 * racers {
		ws := DefaultWorkspace
		if i%2 == 1 {
			ws = "other"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = app.CreateWebhook(ws, url("par", i), []string{"message.read"})
		}()
	}
	wg.Wait()
	created := map[string]int{}
	for i, err := range errs {
		ws := DefaultWorkspace
		if i%2 == 1 {
			ws = "other"
		}
		var e *Error
		switch {
		case err == nil:
			created[ws]++
		case errors.As(err, &e) && e.Code == CodeInvalidRequest:
		default:
			t.Fatalf("create in %s: %v, want success or invalid_request", ws, err)
		}
	}
	if created[DefaultWorkspace] != 2 || created["other"] != racers {
		t.Errorf("parallel creates: %v, want 2 in %s (its last slots) and %d in other", created, DefaultWorkspace, racers)
	}
	for ws, want := range map[string]int{DefaultWorkspace: MaxWebhooksPerWorkspace, "other": racers} {
		if n := len(app.Webhooks(ws)); n != want {
			t.Errorf("%s has %d endpoints, want %d", ws, n, want)
		}
	}
}

// TestWebhookFailuresCountFromReenablingOrANewURL: enabling an endpoint
// again, or pointing it at another URL, starts its failing window afresh;
// other changes do not.
func TestWebhookFailuresCountFromReenablingOrANewURL(t *testing.T) {
	app := openApp(t, fastSandbox(), true)
	w, _, err := app.CreateWebhook(DefaultWorkspace, "https://example.com/a", []string{"*"})
	if err != nil {
		t.Fatal(err)
	}
	patch := func(p WebhookPatch) int64 {
		t.Helper()
		got, err := app.UpdateWebhook(DefaultWorkspace, w.ID, p)
		if err != nil {
			t.Fatal(err)
		}
		return got.FailingCountsFrom
	}
	yes, no := true, false
	events := []string{"message.read"}
	same, other := "https://example.com/a", "https://example.com/b"
	if from := patch(WebhookPatch{Events: &events, URL: &same, Enabled: &yes}); from != 0 {
		t.Fatalf("events, the same URL and enabled while enabled moved the window: %d", from)
	}
	patch(WebhookPatch{Enabled: &no})
	reenabled := patch(WebhookPatch{Enabled: &yes})
	if reenabled == 0 {
		t.Fatal("enabling the endpoint again did not start a fresh window")
	}
	if from := patch(WebhookPatch{URL: &other}); from < reenabled {
		t.Fatalf("a new URL: window from %d, want from now (≥ %d)", from, reenabled)
	}
}
