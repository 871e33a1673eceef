package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// SessionMarks bound the part of a session's message log that a restart
// must read. Queued and sent messages carry their state in their records;
// rather than index each of them (two writes more per message, and two
// deletes later), the dispatcher keeps two low-water marks:
//
//   - QueueFrom: no message of the session with a smaller id is queued.
//   - AwaitFrom: no message of the session with a smaller id still owes a
//     receipt that the transport must be told about again.
//
// A mark may lag behind (a restart then reads more of the log than needed)
// but must never pass a message it covers. Marks are ids as made by NewID;
// the empty string means "from the start".
type SessionMarks struct {
	QueueFrom string
	AwaitFrom string
}

func marksKey(ws, sid string) []byte { return []byte("mark/" + ws + "/" + sid) }

// StageSessionMarks records a session's marks.
func (b *Batch) StageSessionMarks(ws, sessionID string, m SessionMarks) {
	v := make([]byte, 0, 2+len(m.QueueFrom)+len(m.AwaitFrom))
	v = binary.AppendUvarint(v, uint64(len(m.QueueFrom)))
	v = append(v, m.QueueFrom...)
	v = append(v, m.AwaitFrom...)
	b.Set(marksKey(ws, sessionID), v)
}

// StageDeleteSessionMarks forgets a deleted session's marks and paced sends.
func (b *Batch) StageDeleteSessionMarks(ws, sessionID string) {
	b.Delete(marksKey(ws, sessionID))
	b.Delete(paceKey(ws, sessionID))
}

func paceKey(ws, sid string) []byte { return []byte("pace/" + ws + "/" + sid) }

// PacedSend is one send of a paced session: to whom, and when (Unix ns).
type PacedSend struct {
	To string
	At int64
}

// StagePacedSends records a paced session's latest sends, oldest first, so
// a restart keeps to its pacing instead of sending its backlog at once.
func (b *Batch) StagePacedSends(ws, sessionID string, sends []PacedSend) {
	var buf [2048]byte
	b.Set(paceKey(ws, sessionID), appendPacedSends(buf[:0], sends))
}

// appendPacedSends encodes sends: per send, 8 bytes of Unix ns and a
// length-prefixed recipient.
func appendPacedSends(v []byte, sends []PacedSend) []byte {
	for _, s := range sends {
		v = binary.BigEndian.AppendUint64(v, uint64(s.At))
		v = binary.AppendUvarint(v, uint64(len(s.To)))
		v = append(v, s.To...)
	}
	return v
}

// PacedSends reads what StagePacedSends wrote (nil if nothing was).
func (db *DB) PacedSends(ws, sessionID string) ([]PacedSend, error) {
	v, err := db.get(paceKey(ws, sessionID))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the session's last paced sends: %w", err)
	}
	out, ok := decodePacedSends(v)
	if !ok {
		return nil, fmt.Errorf("last paced sends of %s/%s: corrupt record", ws, sessionID)
	}
	return out, nil
}

// decodePacedSends reads appendPacedSends' encoding.
func decodePacedSends(v []byte) (out []PacedSend, ok bool) {
	for len(v) > 0 {
		if len(v) < 9 {
			return nil, false
		}
		at := int64(binary.BigEndian.Uint64(v))
		n, used := binary.Uvarint(v[8:])
		if used <= 0 || uint64(len(v)-8-used) < n {
			return nil, false
		}
		rest := v[8+used:]
		out = append(out, PacedSend{To: string(rest[:n]), At: at})
		v = rest[n:]
	}
	return out, true
}

// SessionMarks reads a session's marks; found is false for a session that
// has none yet (created by a build before marks, or never opened).
func (db *DB) SessionMarks(ws, sessionID string) (m SessionMarks, found bool, err error) {
	v, err := db.get(marksKey(ws, sessionID))
	if errors.Is(err, ErrNotFound) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("read session marks: %w", err)
	}
	n, used := binary.Uvarint(v)
	if used <= 0 || uint64(len(v)-used) < n {
		return m, false, fmt.Errorf("session marks of %s/%s: corrupt record", ws, sessionID)
	}
	rest := v[used:]
	return SessionMarks{QueueFrom: string(rest[:n]), AwaitFrom: string(rest[n:])}, true, nil
}

// SessionMessagesFrom calls fn for each message of a session whose id is at
// least from, oldest first, until fn returns false.
func (db *DB) SessionMessagesFrom(ws, sessionID, from string, fn func(*Message) bool) error {
	p := []byte("ms/" + ws + "/" + sessionID + "/")
	lower := append(bytes.Clone(p), from...)
	var inner error
	err := db.Scan(lower, prefixEnd(p), false, func(k, _ []byte) bool {
		m, err := db.Message(ws, string(k[len(p):]))
		if errors.Is(err, ErrNotFound) {
			return true
		}
		if err != nil {
			inner = err
			return false
		}
		return fn(m)
	})
	if err == nil {
		err = inner
	}
	return err
}
