package loadbench

import (
	"encoding/binary"
	"fmt"
	"net"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/valyala/fasthttp"
)

// Ceiling is the hardware ceiling for a durable send path: a bare fasthttp
// handler that stores each request body with one synced Pebble Set (so every
// 202 waits for a WAL fsync, which Pebble shares among concurrent writers, as
// the product's CommitSync does) and answers 202 with a small JSON body. It
// reads no headers and parses no JSON: anything the real send path does on
// top of this is its own cost.
type Ceiling struct {
	db  *pebble.DB
	srv *fasthttp.Server
	seq atomic.Uint64
}

type silentLogger struct{}

func (silentLogger) Infof(string, ...any)         {}
func (silentLogger) Errorf(string, ...any)        {}
func (silentLogger) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }

// OpenCeiling opens the ceiling's Pebble database in dir. The options match
// the product's storage.Open where they matter (memtable size).
func OpenCeiling(dir string) (*Ceiling, error) {
	db, err := pebble.Open(filepath.Join(dir, "pebble"), &pebble.Options{
		MemTableSize: 64 << 20,
		Logger:       silentLogger{},
	})
	if err != nil {
		return nil, fmt.Errorf("open ceiling pebble in %s: %w", dir, err)
	}
	c := &Ceiling{db: db}
	c.seq.Store(uint64(time.Now().UnixNano()))
	c.srv = &fasthttp.Server{
		Handler:               c.handle,
		Name:                  "ceiling",
		NoDefaultServerHeader: true,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           120 * time.Second,
		MaxRequestBodySize:    1 << 20,
	}
	return c, nil
}

var ceilingBody = []byte(`{"id":"msg_ceiling","status":"queued"}`)

func (c *Ceiling) handle(ctx *fasthttp.RequestCtx) {
	var key [10]byte
	key[0], key[1] = 'm', '/'
	binary.BigEndian.PutUint64(key[2:], c.seq.Add(1))
	if err := c.db.Set(key[:], ctx.PostBody(), pebble.Sync); err != nil {
		ctx.SetStatusCode(fasthttp.StatusInternalServerError)
		ctx.SetBodyString(`{"error":{"type":"api_error","code":"internal","message":"pebble write failed"}}`)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusAccepted)
	ctx.SetContentType("application/json")
	ctx.SetBody(ceilingBody)
}

// Serve answers on ln until Close.
func (c *Ceiling) Serve(ln net.Listener) error { return c.srv.Serve(ln) }

// Close stops the server and closes the database.
func (c *Ceiling) Close() error {
	_ = c.srv.Shutdown()
	return c.db.Close()
}
