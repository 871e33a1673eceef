package whatsmeow

import (
	"context"
	"fmt"
	"log/slog"

	waLog "go.mau.fi/whatsmeow/util/log"
)

// waLogger adapts slog to whatsmeow's logger. whatsmeow's Debug level logs
// every XML node (encrypted payloads, no plaintext); it is only formatted
// when the slog handler has Debug enabled.
type waLogger struct {
	l   *slog.Logger
	mod string
}

func newWALogger(l *slog.Logger, mod string) waLog.Logger { return &waLogger{l: l, mod: mod} }

func (w *waLogger) log(level slog.Level, msg string, args []any) {
	if !w.l.Enabled(context.Background(), level) {
		return
	}
	w.l.Log(context.Background(), level, fmt.Sprintf(msg, args...), "module", w.mod)
}

func (w *waLogger) Warnf(msg string, args ...any)  { w.log(slog.LevelWarn, msg, args) }
func (w *waLogger) Errorf(msg string, args ...any) { w.log(slog.LevelError, msg, args) }
func (w *waLogger) Infof(msg string, args ...any)  { w.log(slog.LevelInfo, msg, args) }
func (w *waLogger) Debugf(msg string, args ...any) { w.log(slog.LevelDebug, msg, args) }
func (w *waLogger) Sub(module string) waLog.Logger {
	return &waLogger{l: w.l, mod: w.mod + "/" + module}
}
