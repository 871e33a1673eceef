// Command walytic is the Walytic Appliance: `walytic serve` runs the API
// server; the other subcommands administer a running server over its admin
// socket. This file only parses the command line and dispatches.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
)

// Set at build time with -ldflags "-X main.version=… -X main.commit=…".
var (
	version = "dev"
	commit  = "unknown"
)

const usageText = `walytic — self-hosted WhatsApp messaging API

Usage:
  walytic [--data-dir DIR] [--admin-socket PATH] COMMAND [ARGS]

Commands:
  serve [--listen 127.0.0.1:8080] [--config FILE] [--check-config] [--admin-token-file FILE]
        [--webhook-allow-private] [--webhook-retry-schedule 5s,5m,…] [--webhook-retention 720h]
        [--max-queue-age 24h] [--disk-reserve 256MiB] [--log-level info]
  version
  workspaces create NAME [--monthly-quota N]
  workspaces list
  workspaces set-quota NAME N
  keys create [--workspace NAME] [--name LABEL] [--rate-per-minute N] [--burst N]
  keys list [--workspace NAME]
  keys rotate KEY_ID
  keys revoke KEY_ID
  sessions list [--workspace NAME]
  sessions pair NUMBER [--workspace NAME] [--phone-code] [--timeout 5m]

Global flags work before or after the command. --data-dir defaults to
$WALYTIC_DATA_DIR or ./walytic-data; --admin-socket to $WALYTIC_ADMIN_SOCKET or
<data-dir>/admin.sock.
`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	g := defaultGlobals()
	rest, err := extractGlobals(args, &g)
	if err == nil {
		err = dispatch(g, rest)
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(os.Stdout, usageText)
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(os.Stderr, "walytic: %v (run `walytic help` for usage)\n", err)
		return 2
	default:
		fmt.Fprintf(os.Stderr, "walytic: %v\n", err)
		return 1
	}
}

func dispatch(g globals, args []string) error {
	if len(args) == 0 {
		return usagef("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "help", "-h", "--help":
		return flag.ErrHelp
	case "version", "--version":
		if len(rest) > 0 {
			return usagef("version takes no arguments, got %q", rest[0])
		}
		fmt.Printf("walytic %s (commit %s, %s)\n", version, commit, runtime.Version())
		return nil
	case "serve":
		return serve(g, rest)
	case "workspaces":
		return workspacesCmd(g, rest)
	case "keys":
		return keysCmd(g, rest)
	case "sessions":
		return sessionsCmd(g, rest)
	}
	return usagef("unknown command %q", cmd)
}
