package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// errUsage marks a command-line mistake: exit status 2.
var errUsage = errors.New("usage")

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }
func (e *usageError) Unwrap() error { return errUsage }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

// globals are the flags accepted before or after any subcommand.
type globals struct {
	dataDir     string
	adminSocket string
}

func defaultGlobals() globals {
	g := globals{dataDir: "./walytic-data"}
	if v := os.Getenv("WALYTIC_DATA_DIR"); v != "" {
		g.dataDir = v
	}
	g.adminSocket = os.Getenv("WALYTIC_ADMIN_SOCKET")
	return g
}

func (g globals) socketPath() string {
	if g.adminSocket != "" {
		return g.adminSocket
	}
	return strings.TrimRight(g.dataDir, "/") + "/admin.sock"
}

// extractGlobals removes the global flags from anywhere in args.
func extractGlobals(args []string, g *globals) ([]string, error) {
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || (name != "data-dir" && name != "admin-socket") {
			rest = append(rest, a)
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return nil, usagef("--%s needs a value", name)
			}
			i++
			val = args[i]
		}
		if name == "data-dir" {
			g.dataDir = val
		} else {
			g.adminSocket = val
		}
	}
	return rest, nil
}

// parseInterspersed parses fs's flags wherever they stand among args and
// returns the positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			pos = append(pos, args[1:]...)
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	return pos, nil
}
