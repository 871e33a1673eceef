package appliance

import (
	"context"
	"errors"
	"time"

	"github.com/walytic/appliance/appliance/whatsapp"
	"github.com/walytic/appliance/appliance/whatsapp/whatsmeow"
	"github.com/walytic/appliance/storage"
)

// QRCode is the pairing QR code on offer.
type QRCode struct {
	Code      string
	ExpiresAt int64
}

func (a *Appliance) pairer(workspace, sessionID string) (*sessionRuntime, whatsapp.Pairer, error) {
	if err := ValidateSessionID("sessionId", sessionID); err != nil {
		return nil, nil, err
	}
	rt, err := a.runtime(workspace, sessionID)
	if err != nil {
		return nil, nil, err
	}
	p, ok := rt.transportNow().(whatsapp.Pairer)
	if !ok {
		return rt, nil, newErr(CodeSessionNotPairing, "sessionId", "session %s is %s, not pairing: QR codes and pairing codes exist only while a whatsmeow session waits to be paired", sessionID, rt.status())
	}
	return rt, p, nil
}

// QR returns the session's current pairing QR code. A session whose codes
// ran out (pairing_timeout), or whose device was unlinked (logged_out),
// starts pairing again, so asking again is all a person has to do.
func (a *Appliance) QR(ctx context.Context, workspace, sessionID string) (QRCode, error) {
	rt, p, err := a.repairer(workspace, sessionID)
	if err != nil {
		return QRCode{}, err
	}
	// A fresh session gets its first code a moment after it connects.
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		code, exp, err := p.QR()
		if err == nil {
			return QRCode{Code: code, ExpiresAt: exp.Unix()}, nil
		}
		st := rt.status()
		if !errors.Is(err, whatsapp.ErrNotPairing) || (st != whatsapp.StatusConnecting && st != whatsapp.StatusPairing) {
			return QRCode{}, newErr(CodeSessionNotPairing, "sessionId", "session %s is %s, not pairing: only a session waiting to be paired has a QR code", sessionID, st)
		}
		select {
		case <-ctx.Done():
			return QRCode{}, ctx.Err()
		case <-deadline.C:
			return QRCode{}, newErr(CodeSessionNotPairing, "sessionId", "session %s is %s and WhatsApp has not handed out a QR code yet: ask again in a few seconds", sessionID, st)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// QRPNG renders the current QR code as a PNG image.
func (a *Appliance) QRPNG(ctx context.Context, workspace, sessionID string, size int) ([]byte, QRCode, error) {
	q, err := a.QR(ctx, workspace, sessionID)
	if err != nil {
		return nil, q, err
	}
	png, err := whatsmeow.QRPNG(q.Code, size)
	return png, q, err
}

// PairingCode asks WhatsApp for an 8-character code to type on the phone
// (Linked devices → Link with phone number) instead of scanning.
func (a *Appliance) PairingCode(ctx context.Context, workspace, sessionID string) (string, error) {
	rt, p, err := a.repairer(workspace, sessionID)
	if err != nil {
		return "", err
	}
	var code string
	for i := 0; i < 50; i++ { // the socket must be up first
		code, err = p.PairingCode(ctx)
		if err == nil || rt.status() != whatsapp.StatusConnecting {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if errors.Is(err, whatsapp.ErrNotPairing) {
		return "", newErr(CodeSessionNotPairing, "sessionId", "session %s is %s, not pairing", sessionID, rt.status())
	}
	if err != nil {
		return "", newErr(CodeSessionNotPairing, "sessionId", "WhatsApp did not give a pairing code: %v", err)
	}
	return code, nil
}

// repairer is pairer for a person who asks to pair: a session that can
// pair no more as it is (its codes ran out, its device was unlinked and
// deleted, or it was banned) is restarted first, and pairs with a fresh
// device if it has none.
func (a *Appliance) repairer(workspace, sessionID string) (*sessionRuntime, whatsapp.Pairer, error) {
	rt, p, err := a.pairer(workspace, sessionID)
	if rt == nil {
		return nil, nil, err
	}
	// banned: after an appeal the number pairs again (a temporary ban with
	// its device kept just reconnects, and is refused again while it lasts).
	// A logged-out one may have no transport at all (not opened at boot).
	if st := rt.status(); st != whatsapp.StatusPairingTimeout && st != whatsapp.StatusLoggedOut && st != whatsapp.StatusBanned {
		return rt, p, err
	}
	if err := a.restartSession(rt); err != nil {
		return nil, nil, err
	}
	return a.pairer(workspace, sessionID)
}

// restartSession stops a runtime and starts a new one for the same record,
// which makes a session whose pairing timed out try again. It does nothing
// when rt is no longer the session's runtime: another request restarted or
// deleted the session meanwhile.
func (a *Appliance) restartSession(rt *sessionRuntime) error {
	defer a.lifecycle.lock(sessionKey{rt.ws, rt.id})()
	a.mu.RLock()
	current := a.sessions[sessionKey{rt.ws, rt.id}] == rt
	a.mu.RUnlock()
	if !current {
		return nil
	}
	rt.stop()
	rt.mu.Lock()
	rec := rt.rec
	rt.mu.Unlock()
	return a.startSession(&rec, false)
}

// SetPacing overrides a session's pacing (nil restores the driver's default;
// all zeros turns pacing off). It applies from the next send.
func (a *Appliance) SetPacing(workspace, sessionID string, p *storage.Pacing) (SessionView, error) {
	if err := ValidateSessionID("sessionId", sessionID); err != nil {
		return SessionView{}, err
	}
	if p != nil {
		if err := ValidatePacing(p); err != nil {
			return SessionView{}, err
		}
	}
	defer a.lifecycle.lock(sessionKey{workspace, sessionID})()
	rt, err := a.runtime(workspace, sessionID)
	if err != nil {
		return SessionView{}, err
	}
	rt.mu.Lock()
	rt.rec.Pacing = p
	rec := rt.rec
	rt.mu.Unlock()
	b := a.db.NewBatch()
	if err := b.StageSession(&rec); err != nil {
		b.Discard()
		return SessionView{}, err
	}
	if err := a.db.CommitSync(b); err != nil {
		return SessionView{}, storageErr("store session", err)
	}
	rt.kick()
	return rt.view(), nil
}
