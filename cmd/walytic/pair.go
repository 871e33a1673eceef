package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/walytic/appliance/appliance"
	"github.com/walytic/appliance/appliance/whatsapp/whatsmeow"
)

type sessionOut struct {
	SessionID    string  `json:"sessionId"`
	Driver       string  `json:"driver"`
	Status       string  `json:"status"`
	StatusReason *string `json:"statusReason"`
}

// pairCmd links a WhatsApp number: it creates the session if needed, draws
// each QR code (or shows a pairing code) and follows the status until the
// phone is linked or pairing fails.
func pairCmd(c *adminClient, args []string) error {
	fs := flag.NewFlagSet("sessions pair", flag.ContinueOnError)
	ws := fs.String("workspace", "default", "workspace the session belongs to")
	phoneCode := fs.Bool("phone-code", false, "show an 8-character code to type on the phone instead of a QR code")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("sessions pair takes one NUMBER (digits with country code, e.g. 919876543210)")
	}
	number := pos[0]
	if err := appliance.ValidateSessionID("NUMBER", number); err != nil {
		e, _ := appliance.AsError(err)
		return usagef("sessions pair: %s", e.Message)
	}
	name, err := pathPart("workspace", *ws)
	if err != nil {
		return err
	}
	base := "/admin/v1/workspaces/" + name + "/sessions"
	var s sessionOut
	if err := c.call("GET", base+"/"+number, nil, &s); err != nil {
		if !strings.Contains(err.Error(), "no session") {
			return err
		}
		if err := c.call("POST", base, map[string]any{"sessionId": number, "driver": "whatsmeow"}, &s); err != nil {
			return err
		}
	}
	if s.Driver != "whatsmeow" {
		return fmt.Errorf("session %s uses the %s driver, which needs no pairing", number, s.Driver)
	}
	deadline := time.Now().Add(*timeout)
	lastQR, shownCode, timeouts := "", false, 0
	// A session found logged_out (unlinked from the phone) or banned is
	// paired again: asking for a code restarts it. One that becomes so while
	// this command pairs it was refused; that is reported.
	for first := true; ; first = false {
		if err := c.call("GET", base+"/"+number, nil, &s); err != nil {
			return err
		}
		reason := ""
		if s.StatusReason != nil {
			reason = *s.StatusReason
		}
		fmt.Fprintf(os.Stderr, "\r\033[Kstatus: %s %s", s.Status, reason)
		switch s.Status {
		case "connected":
			fmt.Fprintln(os.Stderr)
			return printJSON(s)
		case "logged_out", "banned":
			if first { // found so: pair it again (after an appeal, for a ban)
				break
			}
			fmt.Fprintln(os.Stderr)
			return fmt.Errorf("pairing failed: session is %s (%s)", s.Status, reason)
		case "pairing_timeout":
			timeouts++
			if timeouts >= 3 {
				fmt.Fprintln(os.Stderr)
				return errors.New("no phone linked the session: run `walytic sessions pair` again when the phone is at hand")
			}
			lastQR, shownCode = "", false
		}
		if s.Status == "pairing" || s.Status == "pairing_timeout" || (first && (s.Status == "logged_out" || s.Status == "banned")) {
			if *phoneCode && !shownCode {
				var out struct {
					Code string `json:"code"`
				}
				if err := c.call("POST", base+"/"+number+"/pairing-code", nil, &out); err == nil {
					fmt.Fprintf(os.Stderr, "\n")
					fmt.Printf("%s\n", out.Code)
					fmt.Fprintf(os.Stderr, "On the phone of %s: WhatsApp → Linked devices → Link a device → Link with phone number instead, and type the code above.\n", number)
					shownCode = true
				}
			} else if !*phoneCode {
				var q struct {
					QR string `json:"qr"`
				}
				if err := c.call("GET", base+"/"+number+"/qr", nil, &q); err == nil && q.QR != lastQR {
					art, err := whatsmeow.QRTerminal(q.QR)
					if err == nil {
						fmt.Fprint(os.Stderr, "\n")
						fmt.Print(art)
						fmt.Fprintf(os.Stderr, "Scan with the phone of %s: WhatsApp → Linked devices → Link a device. A new code appears every 20 s.\n", number)
						lastQR = q.QR
					}
				}
			}
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr)
			return fmt.Errorf("gave up after %s with the session %s: run `walytic sessions pair %s` again, with a longer --timeout if the phone needs more time", *timeout, s.Status, number)
		}
		time.Sleep(time.Second)
	}
}
