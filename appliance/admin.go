package appliance

import (
	"encoding/hex"
	"errors"

	"github.com/walytic/appliance/appliance/apikey"
	"github.com/walytic/appliance/appliance/limiter"
	"github.com/walytic/appliance/storage"
)

// CreateWorkspace adds a workspace. monthlyQuota 0 means unlimited.
func (a *Appliance) CreateWorkspace(name string, monthlyQuota int64) (storage.Workspace, error) {
	if !validWorkspaceName(name) {
		return storage.Workspace{}, Invalid("name", "workspace names are 1 to 64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit (for example \"acme-prod\"); got %s", QuoteShort(name))
	}
	if monthlyQuota < 0 {
		return storage.Workspace{}, Invalid("monthlyQuota", "monthlyQuota must be 0 (unlimited) or a positive number of messages per month")
	}
	w := storage.Workspace{Name: name, MonthlyQuota: monthlyQuota, CreatedAt: a.now().Unix()}
	if err := a.state.CreateWorkspace(w); err != nil {
		if errors.Is(err, storage.ErrExists) {
			return w, newErr(CodeConflict, "name", "a workspace named %q already exists: use it (for example `walytic keys create --workspace %s`), or choose another name", name, name)
		}
		return w, storageErr("create workspace", err)
	}
	return w, nil
}

// Workspaces lists every workspace.
func (a *Appliance) Workspaces() []storage.Workspace { return a.state.Workspaces() }

// Workspace returns one workspace or a not_found error.
func (a *Appliance) Workspace(name string) (storage.Workspace, error) {
	w, ok := a.state.Workspace(name)
	if !ok {
		return w, newErr(CodeNotFound, "workspace", "no workspace named %s: list them with `walytic workspaces list`", QuoteShort(name))
	}
	return w, nil
}

// SetQuota changes a workspace's monthly quota (0 = unlimited). It takes
// effect for the next send.
func (a *Appliance) SetQuota(name string, monthlyQuota int64) (storage.Workspace, error) {
	if monthlyQuota < 0 {
		return storage.Workspace{}, Invalid("monthlyQuota", "monthlyQuota must be 0 (unlimited) or a positive number of messages per month")
	}
	w, err := a.Workspace(name)
	if err != nil {
		return w, err
	}
	w.MonthlyQuota = monthlyQuota
	if err := a.state.UpdateWorkspace(w); err != nil {
		return w, storageErr("update workspace", err)
	}
	return w, nil
}

// KeyLimits are optional per-key overrides; nil leaves a value as it is.
type KeyLimits struct {
	RatePerMinute *int
	Burst         *int
}

// The bounds of a key's limits.
const (
	MaxRatePerMinute = 6_000_000
	MaxBurst         = 1_000_000
)

func (l KeyLimits) validate() error {
	if l.RatePerMinute != nil && (*l.RatePerMinute < 1 || *l.RatePerMinute > MaxRatePerMinute) {
		return Invalid("ratePerMinute", "ratePerMinute must be between 1 and %d requests per minute (default %d)", MaxRatePerMinute, limiter.DefaultLimits.PerMinute)
	}
	if l.Burst != nil && (*l.Burst < 1 || *l.Burst > MaxBurst) {
		return Invalid("burst", "burst must be between 1 and %d requests (default %d)", MaxBurst, limiter.DefaultLimits.Burst)
	}
	return nil
}

// CreateKey makes a key for a workspace and returns its plaintext, which is
// never stored and cannot be shown again.
func (a *Appliance) CreateKey(workspace, name string, limits KeyLimits) (string, storage.APIKey, error) {
	if _, err := a.Workspace(workspace); err != nil {
		return "", storage.APIKey{}, err
	}
	if len(name) > 200 {
		return "", storage.APIKey{}, Invalid("name", "key names are at most 200 characters")
	}
	if err := limits.validate(); err != nil {
		return "", storage.APIKey{}, err
	}
	plain, err := apikey.New()
	if err != nil {
		return "", storage.APIKey{}, err
	}
	h := apikey.Hash([]byte(plain))
	k := storage.APIKey{
		ID:        storage.NewID("key_", a.now()),
		Workspace: workspace,
		Name:      name,
		Hash:      hex.EncodeToString(h[:]),
		Last4:     apikey.Last4(plain),
		CreatedAt: a.now().Unix(),
	}
	if limits.RatePerMinute != nil {
		k.RatePerMinute = *limits.RatePerMinute
	}
	if limits.Burst != nil {
		k.Burst = *limits.Burst
	}
	if err := a.state.PutKey(k); err != nil {
		return "", k, storageErr("store key", err)
	}
	return plain, k, nil
}

// Keys lists a workspace's keys ("" = all workspaces).
func (a *Appliance) Keys(workspace string) ([]storage.APIKey, error) {
	if workspace != "" {
		if _, err := a.Workspace(workspace); err != nil {
			return nil, err
		}
	}
	return a.state.Keys(workspace), nil
}

// Key returns one key record or not_found.
func (a *Appliance) Key(id string) (storage.APIKey, error) {
	k, ok := a.state.Key(id)
	if !ok {
		return k, errKeyNotFound(id)
	}
	return k, nil
}

func errKeyNotFound(id string) error {
	return newErr(CodeNotFound, "id", "no API key with id %s: list them with `walytic keys list`", QuoteShort(id))
}

// RotateKey gives a key a new secret under the same id. The old secret stops
// working before RotateKey returns.
func (a *Appliance) RotateKey(id string) (string, storage.APIKey, error) {
	plain, err := apikey.New()
	if err != nil {
		return "", storage.APIKey{}, err
	}
	h := apikey.Hash([]byte(plain))
	k, err := a.state.UpdateKey(id, func(k *storage.APIKey) error {
		k.Hash = hex.EncodeToString(h[:])
		k.Last4 = apikey.Last4(plain)
		k.RotatedAt = a.now().Unix()
		return nil
	})
	if err != nil {
		return "", k, keyErr("store rotated key", id, err)
	}
	return plain, k, nil
}

// SetKeyLimits changes a key's rate and burst; the next request obeys them.
func (a *Appliance) SetKeyLimits(id string, limits KeyLimits) (storage.APIKey, error) {
	if _, err := a.Key(id); err != nil {
		return storage.APIKey{}, err
	}
	if err := limits.validate(); err != nil {
		return storage.APIKey{}, err
	}
	k, err := a.state.UpdateKey(id, func(k *storage.APIKey) error {
		if limits.RatePerMinute != nil {
			k.RatePerMinute = *limits.RatePerMinute
		}
		if limits.Burst != nil {
			k.Burst = *limits.Burst
		}
		return nil
	})
	if err != nil {
		return k, keyErr("store key limits", id, err)
	}
	// From now on, not from the key's next request: idle time after the
	// change counts at the new rate.
	a.limiter.Update(k.ID, EffectiveLimits(k))
	return k, nil
}

// keyErr words a failed key update: not_found when the key is gone
// (perhaps revoked meanwhile), else a storage error.
func keyErr(what, id string, err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return errKeyNotFound(id)
	}
	return storageErr(what, err)
}

// RevokeKey deletes a key; it stops working before RevokeKey returns.
func (a *Appliance) RevokeKey(id string) error {
	if err := a.state.DeleteKey(id); err != nil {
		return keyErr("delete key", id, err)
	}
	a.limiter.Forget(id)
	return nil
}

// EffectiveLimits returns the limits a key runs under.
func EffectiveLimits(k storage.APIKey) limiter.Limits {
	l := limiter.DefaultLimits
	if k.RatePerMinute > 0 {
		l.PerMinute = k.RatePerMinute
	}
	if k.Burst > 0 {
		l.Burst = k.Burst
	}
	return l
}
