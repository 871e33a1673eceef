package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/walytic/appliance/appliance"
)

// adminClient talks to a running server over its admin socket.
type adminClient struct {
	socket string
	http   *http.Client
}

func newAdminClient(g globals) *adminClient {
	sock := g.socketPath()
	return &adminClient{socket: sock, http: &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}}
}

// call sends a request and decodes a 2xx JSON answer into out (if non-nil).
// A non-2xx answer becomes an error carrying the server's message.
func (c *adminClient) call(method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://walytic"+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) || errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cannot reach the server's admin socket %s: start it with `walytic serve` (same --data-dir), or point --admin-socket at it", c.socket)
		}
		return fmt.Errorf("admin request: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read admin response: %w", err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
			return errors.New(e.Error.Message)
		}
		return fmt.Errorf("server answered %s", resp.Status)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode admin response: %w", err)
		}
	}
	return nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func workspacesCmd(g globals, args []string) error {
	if len(args) == 0 {
		return usagef("workspaces needs a subcommand: create, list or set-quota")
	}
	c := newAdminClient(g)
	switch args[0] {
	case "create":
		fs := flag.NewFlagSet("workspaces create", flag.ContinueOnError)
		quota := fs.Int64("monthly-quota", 0, "messages per UTC month; 0 = unlimited")
		pos, err := parseInterspersed(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return usagef("workspaces create takes one NAME")
		}
		if *quota < 0 {
			return usagef("--monthly-quota must be a whole number ≥ 0 (0 = unlimited), got %d", *quota)
		}
		var out json.RawMessage
		if err := c.call("POST", "/admin/v1/workspaces", map[string]any{"name": pos[0], "monthlyQuota": *quota}, &out); err != nil {
			return err
		}
		return printJSON(out)
	case "list":
		if len(args) != 1 {
			return usagef("workspaces list takes no arguments")
		}
		var out struct {
			Data json.RawMessage `json:"data"`
		}
		if err := c.call("GET", "/admin/v1/workspaces", nil, &out); err != nil {
			return err
		}
		return printJSON(out.Data)
	case "set-quota":
		if len(args) != 3 {
			return usagef("workspaces set-quota takes NAME and N")
		}
		n, err := strconv.ParseInt(args[2], 10, 64)
		if err != nil || n < 0 {
			return usagef("the quota must be a whole number ≥ 0 (0 = unlimited), got %q", args[2])
		}
		name, err := pathPart("workspace", args[1])
		if err != nil {
			return err
		}
		var out json.RawMessage
		if err := c.call("PATCH", "/admin/v1/workspaces/"+name, map[string]any{"monthlyQuota": n}, &out); err != nil {
			return err
		}
		return printJSON(out)
	}
	return usagef("unknown workspaces subcommand %q", args[0])
}

type keyOut struct {
	ID            string `json:"id"`
	Key           string `json:"key"`
	Workspace     string `json:"workspace"`
	Name          string `json:"name"`
	Last4         string `json:"last4"`
	RatePerMinute int    `json:"ratePerMinute"`
	Burst         int    `json:"burst"`
}

func keysCmd(g globals, args []string) error {
	if len(args) == 0 {
		return usagef("keys needs a subcommand: create, list, rotate or revoke")
	}
	c := newAdminClient(g)
	switch args[0] {
	case "create":
		fs := flag.NewFlagSet("keys create", flag.ContinueOnError)
		ws := fs.String("workspace", "default", "workspace the key belongs to")
		name := fs.String("name", "", "a label for the key")
		rate := fs.Int("rate-per-minute", 0, "requests per minute (default 60)")
		burst := fs.Int("burst", 0, "burst size (default 100)")
		pos, err := parseInterspersed(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 0 {
			return usagef("keys create takes no arguments; label the key with --name")
		}
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		if err := checkKeyLimitFlags(*rate, *burst, given["rate-per-minute"], given["burst"]); err != nil {
			return err
		}
		body := map[string]any{"name": *name}
		if *rate != 0 {
			body["ratePerMinute"] = *rate
		}
		if *burst != 0 {
			body["burst"] = *burst
		}
		wsName, err := pathPart("workspace", *ws)
		if err != nil {
			return err
		}
		var k keyOut
		if err := c.call("POST", "/admin/v1/workspaces/"+wsName+"/keys", body, &k); err != nil {
			return err
		}
		fmt.Println(k.Key)
		fmt.Fprintf(os.Stderr, "created key %s in workspace %s (name %q, %d/min, burst %d); the key is shown only now\n",
			k.ID, k.Workspace, k.Name, k.RatePerMinute, k.Burst)
		return nil
	case "list":
		fs := flag.NewFlagSet("keys list", flag.ContinueOnError)
		ws := fs.String("workspace", "default", "workspace whose keys to list")
		pos, err := parseInterspersed(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 0 {
			return usagef("keys list takes no arguments")
		}
		var out struct {
			Data json.RawMessage `json:"data"`
		}
		name, err := pathPart("workspace", *ws)
		if err != nil {
			return err
		}
		if err := c.call("GET", "/admin/v1/workspaces/"+name+"/keys", nil, &out); err != nil {
			return err
		}
		return printJSON(out.Data)
	case "rotate":
		if len(args) != 2 {
			return usagef("keys rotate takes one KEY_ID (see `walytic keys list`)")
		}
		id, err := pathPart("key", args[1])
		if err != nil {
			return err
		}
		var k keyOut
		if err := c.call("POST", "/admin/v1/keys/"+id+"/rotate", nil, &k); err != nil {
			return err
		}
		fmt.Println(k.Key)
		fmt.Fprintf(os.Stderr, "rotated key %s: the old secret no longer works\n", k.ID)
		return nil
	case "revoke":
		if len(args) != 2 {
			return usagef("keys revoke takes one KEY_ID (see `walytic keys list`)")
		}
		id, err := pathPart("key", args[1])
		if err != nil {
			return err
		}
		return c.call("DELETE", "/admin/v1/keys/"+id, nil, nil)
	}
	return usagef("unknown keys subcommand %q", args[0])
}

func sessionsCmd(g globals, args []string) error {
	if len(args) == 0 {
		return usagef("sessions needs a subcommand: list or pair")
	}
	c := newAdminClient(g)
	switch args[0] {
	case "list":
		fs := flag.NewFlagSet("sessions list", flag.ContinueOnError)
		ws := fs.String("workspace", "default", "workspace whose sessions to list")
		pos, err := parseInterspersed(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 0 {
			return usagef("sessions list takes no arguments")
		}
		var out struct {
			Data json.RawMessage `json:"data"`
		}
		name, err := pathPart("workspace", *ws)
		if err != nil {
			return err
		}
		if err := c.call("GET", "/admin/v1/workspaces/"+name+"/sessions", nil, &out); err != nil {
			return err
		}
		return printJSON(out.Data)
	case "pair":
		return pairCmd(c, args[1:])
	}
	return usagef("unknown sessions subcommand %q", args[0])
}

// checkKeyLimitFlags refuses out-of-range --rate-per-minute and --burst as
// usage errors, named as the flags. A flag not given is 0, the default; a
// flag given must be in range (0 given once made a silent 60/min key).
func checkKeyLimitFlags(rate, burst int, rateGiven, burstGiven bool) error {
	if rate < 0 || rate > appliance.MaxRatePerMinute || rateGiven && rate < 1 {
		return usagef("--rate-per-minute must be 1 to %d (leave it out for the default, 60)", appliance.MaxRatePerMinute)
	}
	if burst < 0 || burst > appliance.MaxBurst || burstGiven && burst < 1 {
		return usagef("--burst must be 1 to %d (leave it out for the default, 100)", appliance.MaxBurst)
	}
	return nil
}

// pathPart returns s for use as one segment of an admin route. The server
// matches paths as sent, so a name or id that needs escaping would meet
// route_not_found; no workspace, key or session can have one, so it is
// answered here the way the server answers a name it does not know.
func pathPart(what, s string) (string, error) {
	if s != "" && s != "." && s != ".." && url.PathEscape(s) == s {
		return s, nil
	}
	switch what {
	case "workspace":
		return "", fmt.Errorf("no workspace named %s: list them with `walytic workspaces list`", appliance.QuoteShort(s))
	case "key":
		return "", fmt.Errorf("no API key with id %s: list them with `walytic keys list`", appliance.QuoteShort(s))
	}
	return "", fmt.Errorf("no %s %s", what, appliance.QuoteShort(s))
}
