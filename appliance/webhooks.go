package appliance

import (
	"errors"
	"time"

	"github.com/walytic/appliance/appliance/webhook"
	"github.com/walytic/appliance/storage"
)

// SecretGrace is how long a rotated-out webhook secret keeps signing.
const SecretGrace = 24 * time.Hour

// MaxRetiringSecrets is how many rotated-out secrets sign at once beside
// the current one: a rotation beyond it retires the oldest early. Every
// live secret signs every delivery, so without a bound a script rotating
// in a loop would grow each delivery's headers past what receivers accept
// (nginx refuses a header line over 8 KB) for a day.
const MaxRetiringSecrets = 4

// MaxWebhooksPerWorkspace bounds a workspace's endpoints: each is a lane of
// up to 8 deliveries in flight for every event, so one tenant's endpoints
// must not be able to take the whole deliverer (or its memory).
const MaxWebhooksPerWorkspace = 50

// WebhookPatch changes an endpoint; nil fields stay as they are.
type WebhookPatch struct {
	URL     *string
	Events  *[]string
	Enabled *bool
}

func (a *Appliance) checkWebhookURL(url string) error {
	if err := webhook.ValidateURL(url, a.webhookAllowPrivate); err != nil {
		return Invalid("url", "%v", err)
	}
	return nil
}

func checkEvents(events []string) error {
	if len(events) == 0 {
		return Invalid("events", "events must list at least one event type, or [\"*\"] for all: %v", webhook.EventTypes)
	}
	for _, e := range events {
		if !webhook.ValidEvent(e) {
			return Invalid("events", "unknown event type %s: use \"*\" or some of %v", QuoteShort(e), webhook.EventTypes)
		}
	}
	return nil
}

func (a *Appliance) webhooksEnabled() error {
	if a.webhooks == nil {
		return Invalid("", "webhooks are not enabled on this server")
	}
	return nil
}

// CreateWebhook registers an endpoint and returns it with its first secret,
// which is shown only now.
func (a *Appliance) CreateWebhook(workspace, url string, events []string) (storage.Webhook, string, error) {
	if err := a.webhooksEnabled(); err != nil {
		return storage.Webhook{}, "", err
	}
	if err := a.checkWebhookURL(url); err != nil {
		return storage.Webhook{}, "", err
	}
	if err := checkEvents(events); err != nil {
		return storage.Webhook{}, "", err
	}
	defer a.webhookCreate.lock(workspace)()
	if n := len(a.state.Webhooks(workspace)); n >= MaxWebhooksPerWorkspace {
		return storage.Webhook{}, "", Invalid("", "this workspace has %d webhook endpoints, the most it may have: delete one it no longer uses (DELETE /v1/webhooks/{id}), or subscribe an existing one to more events", n)
	}
	secret, err := webhook.NewSecret()
	if err != nil {
		return storage.Webhook{}, "", err
	}
	now := a.now()
	w := storage.Webhook{
		ID: storage.NewID("wh_", now), Workspace: workspace, URL: url, Events: append([]string(nil), events...),
		Enabled: true, Secrets: []storage.WebhookSecret{{Secret: secret}}, CreatedAt: now.Unix(), UpdatedAt: now.Unix(),
	}
	if err := a.state.PutWebhook(w); err != nil {
		return w, "", storageErr("store webhook", err)
	}
	return w, secret, nil
}

// Webhooks lists a workspace's endpoints.
func (a *Appliance) Webhooks(workspace string) []storage.Webhook {
	return append([]storage.Webhook(nil), a.state.Webhooks(workspace)...)
}

// Webhook returns one endpoint of a workspace.
func (a *Appliance) Webhook(workspace, id string) (storage.Webhook, error) {
	w, ok := a.state.Webhook(id)
	if !ok || w.Workspace != workspace {
		return storage.Webhook{}, errWebhookNotFound(id)
	}
	return w, nil
}

func errWebhookNotFound(id string) error {
	return newErr(CodeNotFound, "id", "no webhook %s in this workspace: list them with GET /v1/webhooks", QuoteShort(id))
}

// UpdateWebhook applies a patch; deliveries use it from the next attempt.
func (a *Appliance) UpdateWebhook(workspace, id string, p WebhookPatch) (storage.Webhook, error) {
	if _, err := a.Webhook(workspace, id); err != nil {
		return storage.Webhook{}, err
	}
	if p.URL != nil {
		if err := a.checkWebhookURL(*p.URL); err != nil {
			return storage.Webhook{}, err
		}
	}
	if p.Events != nil {
		if err := checkEvents(*p.Events); err != nil {
			return storage.Webhook{}, err
		}
	}
	w, err := a.state.UpdateWebhook(id, func(w *storage.Webhook) error {
		now := a.now()
		if p.URL != nil {
			if *p.URL != w.URL {
				w.FailingCountsFrom = now.UnixMilli() // a new receiver: its own 5 days
			}
			w.URL = *p.URL
		}
		if p.Events != nil {
			w.Events = append([]string(nil), (*p.Events)...)
		}
		if p.Enabled != nil {
			if *p.Enabled && !w.Enabled {
				// Enabled again (after being disabled for failing, say):
				// earlier failures no longer count toward disabling it.
				w.FailingCountsFrom = now.UnixMilli()
			}
			w.Enabled = *p.Enabled
			if w.Enabled {
				w.DisabledReason = ""
			}
		}
		w.UpdatedAt = now.Unix()
		return nil
	})
	if err != nil {
		return w, webhookErr("store webhook", id, err)
	}
	return w, nil
}

// webhookErr words a failed endpoint update: not_found when the endpoint
// is gone (deleted meanwhile), else a storage error.
func webhookErr(what, id string, err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return errWebhookNotFound(id)
	}
	return storageErr(what, err)
}

// DeleteWebhook removes an endpoint; its pending deliveries are dropped.
func (a *Appliance) DeleteWebhook(workspace, id string) error {
	if _, err := a.Webhook(workspace, id); err != nil {
		return err
	}
	if err := a.state.DeleteWebhook(id); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return storageErr("delete webhook", err)
	}
	return nil
}

// RotateWebhookSecret makes a new signing secret; the previous one keeps
// signing beside it for SecretGrace so receivers can switch without a gap
// (at most MaxRetiringSecrets of them, the newest).
func (a *Appliance) RotateWebhookSecret(workspace, id string) (storage.Webhook, string, error) {
	if _, err := a.Webhook(workspace, id); err != nil {
		return storage.Webhook{}, "", err
	}
	secret, err := webhook.NewSecret()
	if err != nil {
		return storage.Webhook{}, "", err
	}
	now := a.now()
	w, err := a.state.UpdateWebhook(id, func(w *storage.Webhook) error {
		kept := []storage.WebhookSecret{}
		for _, s := range w.Secrets {
			switch {
			case s.ExpiresAt == 0:
				s.ExpiresAt = now.Add(SecretGrace).Unix()
				kept = append(kept, s)
			case now.Unix() < s.ExpiresAt:
				kept = append(kept, s)
			}
		}
		// Secrets are kept oldest first: the ones beyond the bound go.
		if n := len(kept) - MaxRetiringSecrets; n > 0 {
			kept = kept[n:]
		}
		w.Secrets = append(kept, storage.WebhookSecret{Secret: secret})
		w.UpdatedAt = now.Unix()
		return nil
	})
	if err != nil {
		return w, "", webhookErr("store webhook", id, err)
	}
	return w, secret, nil
}

// WebhookAttempts lists an endpoint's delivery attempts, newest first.
func (a *Appliance) WebhookAttempts(workspace, id, cursor string, limit int) ([]storage.Attempt, string, error) {
	if err := a.webhooksEnabled(); err != nil {
		return nil, "", err
	}
	if _, err := a.Webhook(workspace, id); err != nil {
		return nil, "", err
	}
	return a.webhooks.Attempts(id, cursor, limit)
}

// Redeliver sends a delivery again now.
func (a *Appliance) Redeliver(workspace, deliveryID string) (*storage.Delivery, error) {
	if err := a.webhooksEnabled(); err != nil {
		return nil, err
	}
	d, err := a.webhooks.Redeliver(workspace, deliveryID)
	if errors.Is(err, webhook.ErrNotFound) {
		return nil, newErr(CodeNotFound, "deliveryId", "no delivery %s in this workspace: delivery ids are in GET /v1/webhooks/{id}/deliveries", QuoteShort(deliveryID))
	}
	var ue *webhook.UnattemptableError
	if errors.As(err, &ue) {
		if ue.EndpointGone {
			return nil, newErr(CodeNotFound, "deliveryId", "delivery %s was for an endpoint that has been deleted: there is nowhere to redeliver it", deliveryID)
		}
		return nil, newErr(CodeConflict, "deliveryId", "delivery %s cannot be redelivered: %s", deliveryID, ue.Reason)
	}
	return d, err
}
