package storage

import (
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
)

// ErrExists is returned when creating a record whose name is taken.
var ErrExists = errors.New("already exists")

// LocalState is the single-node home of replicated state (workspaces, API
// keys with their limit overrides, quota budgets and webhook endpoints): written through to
// Pebble, served from an immutable in-memory snapshot so the per-request key
// look-up takes no lock. A cluster replaces it with its raft FSM.
type LocalState struct {
	db   *DB
	mu   sync.Mutex // serialises writers
	snap atomic.Pointer[stateSnapshot]
}

type stateSnapshot struct {
	workspaces map[string]Workspace
	keys       map[string]APIKey   // by id
	byHash     map[[32]byte]string // hash → key id
	webhooks   map[string]Webhook  // by id
	// webhooksOf indexes webhooks by workspace, rebuilt on every webhook
	// write, so the per-event look-up allocates nothing.
	webhooksOf map[string][]Webhook
}

func (s *stateSnapshot) indexWebhooks() {
	s.webhooksOf = make(map[string][]Webhook, len(s.webhooks))
	for _, w := range s.webhooks {
		s.webhooksOf[w.Workspace] = append(s.webhooksOf[w.Workspace], w)
	}
	for _, list := range s.webhooksOf {
		sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	}
}

func (s *stateSnapshot) clone() *stateSnapshot {
	n := &stateSnapshot{
		workspaces: make(map[string]Workspace, len(s.workspaces)+1),
		keys:       make(map[string]APIKey, len(s.keys)+1),
		byHash:     make(map[[32]byte]string, len(s.byHash)+1),
		webhooks:   make(map[string]Webhook, len(s.webhooks)+1),
		webhooksOf: s.webhooksOf,
	}
	for k, v := range s.workspaces {
		n.workspaces[k] = v
	}
	for k, v := range s.keys {
		n.keys[k] = v
	}
	for k, v := range s.byHash {
		n.byHash[k] = v
	}
	for k, v := range s.webhooks {
		n.webhooks[k] = v
	}
	return n
}

// OpenLocalState loads workspaces and keys into memory.
func OpenLocalState(db *DB) (*LocalState, error) {
	snap := &stateSnapshot{
		workspaces: map[string]Workspace{},
		keys:       map[string]APIKey{},
		byHash:     map[[32]byte]string{},
		webhooks:   map[string]Webhook{},
	}
	var decErr error
	err := db.Scan([]byte("ws/"), prefixEnd([]byte("ws/")), false, func(_, v []byte) bool {
		var w Workspace
		if decErr = decode(v, &w); decErr != nil {
			return false
		}
		snap.workspaces[w.Name] = w
		return true
	})
	if err == nil && decErr == nil {
		err = db.Scan([]byte("key/"), prefixEnd([]byte("key/")), false, func(_, v []byte) bool {
			var k APIKey
			if decErr = decode(v, &k); decErr != nil {
				return false
			}
			h, herr := parseHash(k.Hash)
			if herr != nil {
				decErr = fmt.Errorf("key %s: %w", k.ID, herr)
				return false
			}
			snap.keys[k.ID] = k
			snap.byHash[h] = k.ID
			return true
		})
	}
	if err == nil && decErr == nil {
		err = db.Scan([]byte("wh/"), prefixEnd([]byte("wh/")), false, func(_, v []byte) bool {
			var w Webhook
			if decErr = decode(v, &w); decErr != nil {
				return false
			}
			snap.webhooks[w.ID] = w
			return true
		})
	}
	if err == nil {
		err = decErr
	}
	if err != nil {
		return nil, fmt.Errorf("load workspaces, keys and webhooks: %w", err)
	}
	snap.indexWebhooks()
	s := &LocalState{db: db}
	s.snap.Store(snap)
	return s, nil
}

func parseHash(h string) ([32]byte, error) {
	var out [32]byte
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 32 {
		return out, fmt.Errorf("stored key hash is not 64 hex characters")
	}
	copy(out[:], b)
	return out, nil
}

// Workspace returns the named workspace.
func (s *LocalState) Workspace(name string) (Workspace, bool) {
	w, ok := s.snap.Load().workspaces[name]
	return w, ok
}

// Workspaces returns every workspace, by name.
func (s *LocalState) Workspaces() []Workspace {
	m := s.snap.Load().workspaces
	out := make([]Workspace, 0, len(m))
	for _, w := range m {
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// CreateWorkspace stores a new workspace; ErrExists if the name is taken.
func (s *LocalState) CreateWorkspace(w Workspace) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.snap.Load().workspaces[w.Name]; ok {
		return ErrExists
	}
	return s.putWorkspaceLocked(w)
}

// UpdateWorkspace replaces an existing workspace; ErrNotFound if missing.
func (s *LocalState) UpdateWorkspace(w Workspace) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.snap.Load().workspaces[w.Name]; !ok {
		return ErrNotFound
	}
	return s.putWorkspaceLocked(w)
}

func (s *LocalState) putWorkspaceLocked(w Workspace) error {
	v, err := encode(w)
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	b.Set([]byte("ws/"+w.Name), v)
	if err := s.db.CommitSync(b); err != nil {
		return fmt.Errorf("store workspace %s: %w", w.Name, err)
	}
	n := s.snap.Load().clone()
	n.workspaces[w.Name] = w
	s.snap.Store(n)
	return nil
}

// Key returns the key record with that id.
func (s *LocalState) Key(id string) (APIKey, bool) {
	k, ok := s.snap.Load().keys[id]
	return k, ok
}

// KeyByHash returns the key whose plaintext hashes to h. It takes no lock.
func (s *LocalState) KeyByHash(h [32]byte) (APIKey, bool) {
	snap := s.snap.Load()
	id, ok := snap.byHash[h]
	if !ok {
		return APIKey{}, false
	}
	k, ok := snap.keys[id]
	return k, ok
}

// Keys returns the keys of a workspace (all keys when workspace is ""), oldest first.
func (s *LocalState) Keys(workspace string) []APIKey {
	m := s.snap.Load().keys
	out := make([]APIKey, 0, len(m))
	for _, k := range m {
		if workspace == "" || k.Workspace == workspace {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].CreatedAt != out[j].CreatedAt {
			return out[i].CreatedAt < out[j].CreatedAt
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// PutKey inserts or replaces a key by id. A replaced hash stops matching
// before PutKey returns, which is what makes rotation immediate. To change
// an existing key use UpdateKey: a read, then PutKey, could bring back a
// key revoked in between.
func (s *LocalState) PutKey(k APIKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.putKeyLocked(k)
}

// UpdateKey applies change to the key with that id and stores it, all under
// the state's lock, so concurrent changes (a revocation, a rotation) never
// undo one another; ErrNotFound if the key is gone. An error from change is
// returned as it is, and nothing is stored.
func (s *LocalState) UpdateKey(id string, change func(*APIKey) error) (APIKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.snap.Load().keys[id]
	if !ok {
		return k, ErrNotFound
	}
	if err := change(&k); err != nil {
		return k, err
	}
	k.ID = id
	return k, s.putKeyLocked(k)
}

func (s *LocalState) putKeyLocked(k APIKey) error {
	h, err := parseHash(k.Hash)
	if err != nil {
		return err
	}
	v, err := encode(k)
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	b.Set([]byte("key/"+k.ID), v)
	if err := s.db.CommitSync(b); err != nil {
		return fmt.Errorf("store key %s: %w", k.ID, err)
	}
	n := s.snap.Load().clone()
	if old, ok := n.keys[k.ID]; ok {
		if oh, err := parseHash(old.Hash); err == nil {
			delete(n.byHash, oh)
		}
	}
	n.keys[k.ID] = k
	n.byHash[h] = k.ID
	s.snap.Store(n)
	return nil
}

// DeleteKey removes a key; ErrNotFound if missing.
func (s *LocalState) DeleteKey(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.snap.Load().keys[id]
	if !ok {
		return ErrNotFound
	}
	b := s.db.NewBatch()
	b.Delete([]byte("key/" + id))
	if err := s.db.CommitSync(b); err != nil {
		return fmt.Errorf("delete key %s: %w", id, err)
	}
	n := s.snap.Load().clone()
	delete(n.keys, id)
	if oh, err := parseHash(old.Hash); err == nil {
		delete(n.byHash, oh)
	}
	s.snap.Store(n)
	return nil
}
