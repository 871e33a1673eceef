package storage

import (
	"errors"
	"fmt"
)

func sessKey(ws, id string) []byte { return []byte("sess/" + ws + "/" + id) }

// StageSession writes a session record.
func (b *Batch) StageSession(s *Session) error {
	v, err := encode(s)
	if err != nil {
		return err
	}
	b.Set(sessKey(s.Workspace, s.ID), v)
	return nil
}

// StageDeleteSession removes a session record and its marks. Its messages
// stay in the log (the caller has failed the queued ones first).
func (b *Batch) StageDeleteSession(ws, id string) {
	b.Delete(sessKey(ws, id))
	b.StageDeleteSessionMarks(ws, id)
}

// Session reads one session, or ErrNotFound.
func (db *DB) Session(ws, id string) (*Session, error) {
	v, err := db.get(sessKey(ws, id))
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("read session %s: %w", id, err)
	}
	s := &Session{}
	if err := decode(v, s); err != nil {
		return nil, fmt.Errorf("session %s: %w", id, err)
	}
	return s, nil
}

// Sessions returns every session (of one workspace, or of all when ws is "").
func (db *DB) Sessions(ws string) ([]*Session, error) {
	p := []byte("sess/")
	if ws != "" {
		p = []byte("sess/" + ws + "/")
	}
	var out []*Session
	var decErr error
	err := db.Scan(p, prefixEnd(p), false, func(_, v []byte) bool {
		s := &Session{}
		if decErr = decode(v, s); decErr != nil {
			return false
		}
		out = append(out, s)
		return true
	})
	if err == nil {
		err = decErr
	}
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return out, nil
}
