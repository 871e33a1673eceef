package appliance

import (
	"context"
	"errors"
	"fmt"

	"github.com/walytic/appliance/appliance/whatsapp"
	"github.com/walytic/appliance/storage"
)

// SessionView is a session as the API shows it.
type SessionView struct {
	storage.Session
	QueueDepth int64
	NextSendAt int64 // Unix seconds; 0 = nothing waiting
}

// CreateSession registers a WhatsApp number with a workspace and starts its
// transport.
func (a *Appliance) CreateSession(workspace, sessionID, driver string) (SessionView, error) {
	if err := ValidateSessionID("sessionId", sessionID); err != nil {
		return SessionView{}, err
	}
	d, ok := a.drivers[driver]
	if !ok {
		return SessionView{}, Invalid("driver", "driver must be one of %s; got %s", a.driverList(), QuoteShort(driver))
	}
	a.mu.Lock()
	key := sessionKey{workspace, sessionID}
	if rt, exists := a.sessions[key]; exists {
		a.mu.Unlock()
		if !rt.ready.Load() {
			// GET answers 404 meanwhile; say why this one is a conflict.
			return SessionView{}, newErr(CodeSessionExists, "sessionId", "session %s is being created or deleted by another request: retry in a moment", sessionID)
		}
		return SessionView{}, newErr(CodeSessionExists, "sessionId", "session %s already exists in this workspace: use it, or DELETE /v1/sessions/%s first", sessionID, sessionID)
	}
	rec := &storage.Session{
		Workspace: workspace,
		ID:        sessionID,
		Driver:    d.Name(),
		Status:    whatsapp.StatusConnecting,
		CreatedAt: a.now().Unix(),
	}
	rt := a.newRuntime(rec)
	a.sessions[key] = rt // reserve the id while the record is written
	a.mu.Unlock()

	b := a.db.NewBatch()
	if err := b.StageSession(rec); err != nil {
		b.Discard()
		a.dropRuntime(key)
		return SessionView{}, err
	}
	if err := a.db.CommitSync(b); err != nil {
		a.dropRuntime(key)
		return SessionView{}, storageErr("store session", err)
	}
	if err := rt.open(d, false); err != nil {
		a.log.Error("session transport did not open", "workspace", workspace, "sessionId", sessionID, "err", err)
	}
	return rt.view(), nil
}

func (a *Appliance) driverList() string {
	s := ""
	for _, n := range []string{whatsapp.DriverWhatsmeow, whatsapp.DriverSandbox} {
		if _, ok := a.drivers[n]; ok {
			if s != "" {
				s += ", "
			}
			s += `"` + n + `"`
		}
	}
	return s
}

func (a *Appliance) dropRuntime(key sessionKey) {
	a.mu.Lock()
	delete(a.sessions, key)
	a.mu.Unlock()
}

// startSession brings up a stored session: at boot, and when a session is
// restarted. A session whose driver this build lacks is listed but not run.
func (a *Appliance) startSession(rec *storage.Session, atBoot bool) error {
	rt := a.newRuntime(rec)
	a.mu.Lock()
	a.sessions[sessionKey{rec.Workspace, rec.ID}] = rt
	a.mu.Unlock()
	d, ok := a.drivers[rec.Driver]
	if !ok {
		err := fmt.Errorf("driver %q is not available in this build", rec.Driver)
		// Its queue is read all the same, so that DELETE fails what an
		// earlier run left queued (the marks go with the record).
		if ierr := rt.openIdle(atBoot); ierr != nil {
			return ierr
		}
		rt.notStarted(err)
		return err
	}
	if atBoot && rec.Unlinked && (rec.Status == whatsapp.StatusLoggedOut || rec.Status == whatsapp.StatusBanned) {
		// No device to log in with: opening it would start pairing
		// unasked (QR codes nobody scans) and replace the status that says
		// why. It stays as it is until someone asks to pair it.
		return rt.openIdle(atBoot)
	}
	return rt.open(d, atBoot)
}

func (a *Appliance) runtime(workspace, sessionID string) (*sessionRuntime, error) {
	a.mu.RLock()
	rt, ok := a.sessions[sessionKey{workspace, sessionID}]
	a.mu.RUnlock()
	if !ok || !rt.ready.Load() {
		return nil, newErr(CodeSessionNotFound, "sessionId", "no session %s in this workspace: create it with POST /v1/sessions {\"sessionId\":\"%s\",\"driver\":\"sandbox\"}", QuoteShort(sessionID), sessionID)
	}
	return rt, nil
}

// Session returns one session of a workspace.
func (a *Appliance) Session(workspace, sessionID string) (SessionView, error) {
	if err := ValidateSessionID("sessionId", sessionID); err != nil {
		return SessionView{}, err
	}
	rt, err := a.runtime(workspace, sessionID)
	if err != nil {
		return SessionView{}, err
	}
	return rt.view(), nil
}

// Sessions lists a workspace's sessions ("" = every workspace), by id.
func (a *Appliance) Sessions(workspace string) []SessionView {
	a.mu.RLock()
	var out []SessionView
	for k, rt := range a.sessions {
		if (workspace == "" || k.ws == workspace) && rt.ready.Load() {
			out = append(out, rt.view())
		}
	}
	a.mu.RUnlock()
	sortSessions(out)
	return out
}

// DeleteSession logs the session out, deletes its device state and its
// record, and fails the messages still queued for it.
func (a *Appliance) DeleteSession(ctx context.Context, workspace, sessionID string) error {
	if err := ValidateSessionID("sessionId", sessionID); err != nil {
		return err
	}
	defer a.lifecycle.lock(sessionKey{workspace, sessionID})()
	rt, err := a.runtime(workspace, sessionID)
	if err != nil {
		return err
	}
	rt.ready.Store(false)
	rt.logout(ctx)
	rt.stop()
	if err := rt.failQueued(CodeSessionNotConnected, "the session was deleted before this message was sent"); err != nil {
		return err
	}
	b := a.db.NewBatch()
	b.StageDeleteSession(workspace, sessionID)
	if rt.status() != whatsapp.StatusLoggedOut {
		now := a.now()
		ev := Event{ID: storage.NewID("evt_", now), Type: EventSessionLoggedOut, Workspace: workspace, SessionID: sessionID,
			Timestamp: now.Unix(), Reason: "the session was deleted through the API"}
		if err := a.events.Stage(b, ev); err != nil {
			b.Discard()
			return err
		}
	}
	if err := a.db.CommitSync(b); err != nil {
		return storageErr("delete session", err)
	}
	a.events.Committed()
	a.dropRuntime(sessionKey{workspace, sessionID})
	return nil
}

// SimulateInbound makes a sandbox session receive a text message; replyTo,
// if set, is the id of a message of the session's log it quotes.
func (a *Appliance) SimulateInbound(ctx context.Context, workspace, sessionID, from, text, replyTo string) error {
	if err := ValidateSessionID("sessionId", sessionID); err != nil {
		return err
	}
	if err := ValidateRecipient("from", from); err != nil {
		return err
	}
	if err := ValidateText(text); err != nil {
		return err
	}
	rt, err := a.runtime(workspace, sessionID)
	if err != nil {
		return err
	}
	tr := rt.transportNow()
	if tr == nil {
		return newErr(CodeSessionNotConnected, "sessionId", "session %s has no running transport (%s); see GET /v1/sessions/%s", sessionID, rt.status(), sessionID)
	}
	sim, ok := tr.(whatsapp.InboundSimulator)
	if !ok {
		return Invalid("sessionId", "session %s uses the %s driver; simulated inbound messages exist only for sandbox sessions", sessionID, rt.driver())
	}
	if err := a.db.CheckSpace(); err != nil {
		return storageErr("check free space", err)
	}
	var refersTo string
	if replyTo != "" {
		m, err := a.db.Message(workspace, replyTo)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("read the message replyTo names: %w", err)
		}
		if err != nil || m.SessionID != sessionID || m.WAID == "" {
			return Invalid("replyTo", "replyTo must be the id of a message of session %s (sent, or received), as GET /v1/messages lists them", sessionID)
		}
		refersTo = m.WAID
	}
	// Answered once the message is on disk (the session's StoreInbound), so
	// an accepted one survives a crash, as a send does.
	switch err := sim.SimulateInbound(ctx, from, text, refersTo); {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrDiskFull):
		return storageErr("store the inbound message", err)
	case ctx.Err() != nil:
		return fmt.Errorf("store the inbound message: %w", err)
	default:
		return newErr(CodeSessionNotConnected, "sessionId", "the sandbox session is not running: %v", err)
	}
}

// NumberResult says whether one number is on WhatsApp.
type NumberResult struct {
	Number     string
	OnWhatsApp bool
}

// MaxNumbersPerCheck bounds POST /v1/numbers/check.
const MaxNumbersPerCheck = 500

// CheckNumbers asks the session's network which numbers are on WhatsApp,
// through the session's cache.
func (a *Appliance) CheckNumbers(ctx context.Context, workspace, sessionID string, numbers []string) ([]NumberResult, error) {
	if err := ValidateSessionID("sessionId", sessionID); err != nil {
		return nil, err
	}
	if len(numbers) == 0 {
		return nil, Invalid("numbers", "numbers must list 1 to %d phone numbers, for example [\"919999999999\"]", MaxNumbersPerCheck)
	}
	if len(numbers) > MaxNumbersPerCheck {
		return nil, Invalid("numbers", "numbers lists %d entries; the limit is %d per request: split the list", len(numbers), MaxNumbersPerCheck)
	}
	for i, n := range numbers {
		if err := ValidateRecipient(fmt.Sprintf("numbers[%d]", i), n); err != nil {
			return nil, err
		}
	}
	rt, err := a.runtime(workspace, sessionID)
	if err != nil {
		return nil, err
	}
	if !rt.paired() {
		return nil, newErr(CodeSessionNotConnected, "sessionId", "session %s is %s: numbers can be checked once it is connected", sessionID, rt.status())
	}
	on, err := rt.checkNumbers(ctx, numbers)
	if err != nil {
		var se *whatsapp.SendError
		if errors.As(err, &se) {
			return nil, newErr(se.Code, "sessionId", "%s", se.Message)
		}
		return nil, fmt.Errorf("check numbers: %w", err)
	}
	out := make([]NumberResult, len(numbers))
	for i, n := range numbers {
		out[i] = NumberResult{Number: n, OnWhatsApp: on[i]}
	}
	return out, nil
}
