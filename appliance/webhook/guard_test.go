package webhook

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

// urlVerdict is what ValidateURL should say about a URL.
type urlVerdict int

const (
	verdictOK      urlVerdict = iota // accepted whatever allowPrivate says
	verdictPrivate                   // refused, but accepted with allowPrivate
	verdictNever                     // refused whatever allowPrivate says
)

func TestValidateURL(t *testing.T) {
	tests := []struct {
		url  string
		want urlVerdict
		msg  string // a fragment the refusal must contain
	}{
		// Fine.
		{"https://example.com/hooks/walytic", verdictOK, ""},
		{"http://example.com", verdictOK, ""},
		{"HTTPS://Example.COM:8443/a?b=c#frag", verdictOK, ""},
		{"https://hooks.example.com./x", verdictOK, ""},
		{"https://my_host.example.com/x", verdictOK, ""},
		{"https://xn--bcher-kva.example/x", verdictOK, ""},
		{"https://93.184.215.14/x", verdictOK, ""},
		{"https://8.8.8.8:443/", verdictOK, ""},
		{"https://[2606:4700:4700::1111]/x", verdictOK, ""},
		{"https://[2606:4700::1111]:8443/x", verdictOK, ""},
		{"https://[::ffff:8.8.8.8]/", verdictOK, ""},
		{"https://[64:ff9b::808:808]/", verdictOK, ""}, // NAT64 of 8.8.8.8
		{"http://localhost.example.com/", verdictOK, ""},
		{"http://metadata/", verdictOK, ""}, // a plain name; checked when dialled
		{"http://172.32.0.1/", verdictOK, ""},
		{"http://100.128.0.1/", verdictOK, ""},

		// Shape.
		{"", verdictNever, "empty"},
		{"http://example.com/ ", verdictNever, "control character at byte 19"},
		{"http://example.com/a b", verdictNever, "control character"},
		{"http://example.com/\t", verdictNever, "control character"},
		{" http://example.com/", verdictNever, "at byte 0"},
		{"http://example.com/%20", verdictOK, ""},
		{"http://example.com/hook\u00a0", verdictNever, "control character"},
		{"http://example.com/hook\u2028", verdictNever, "control character"},
		{"http://example.com/hook\u0085", verdictNever, "control character"},
		{"http://example.com/hook\u200b", verdictNever, "invisible"},
		{"http://example.com/\ufeffhook", verdictNever, "invisible"},
		{"http://example.com/caf\u00e9", verdictOK, ""},
		{"example.com/hooks", verdictNever, "no scheme"},
		{"//example.com/hooks", verdictNever, "no scheme"},
		{"ftp://example.com/x", verdictNever, `"ftp"`},
		{"file:///etc/passwd", verdictNever, `"file"`},
		{"javascript:alert(1)", verdictNever, `"javascript"`},
		{"gopher://example.com/", verdictNever, "only http and https"},
		{"ws://example.com/", verdictNever, "only http and https"},
		{"http:example.com", verdictNever, "two slashes"},
		{"http:///path", verdictNever, "no host"},
		{"http://", verdictNever, "no host"},
		{"https://:443/x", verdictNever, "no host"},
		{"http://user:pass@example.com/", verdictNever, "credentials"},
		{"http://user@example.com/", verdictNever, "credentials"},
		{"http://@example.com/", verdictNever, "credentials"},
		{"http://example.com:0/", verdictNever, "port"},
		{"http://example.com:65536/", verdictNever, "port"},
		{"http://example.com:99999999999999999999/", verdictNever, "port"},
		{"http://exa mple.com/", verdictNever, ""},
		{"http://example.com/\x00", verdictNever, "control character"},
		{"http://exa%20mple.com/", verdictNever, ""},
		{"http://exa!mple.com/", verdictNever, "not allowed in a host name"},
		{"http://exa..mple.com/", verdictNever, "empty label"},
		{"http://.example.com/", verdictNever, "empty label"},
		{"http://bücher.example/", verdictNever, "punycode"},
		{"http://ｌｏｃａｌｈｏｓｔ/", verdictNever, "punycode"},
		{"http://[example.com]/", verdictNever, ""},
		{"http://" + strings.Repeat("a", 64) + ".com/", verdictNever, "63"},
		{"http://" + strings.Repeat("a.", 127) + "com/", verdictNever, "253"},
		{"https://example.com/" + strings.Repeat("a", MaxURLLength), verdictNever, "2048"},

		// Numbers that are IP addresses to inet_aton, browsers or resolvers.
		{"http://2130706433/", verdictNever, "127.0.0.1"},
		{"http://0x7f.1/", verdictNever, "127.0.0.1"},
		{"http://0x7f000001/", verdictNever, "127.0.0.1"},
		{"http://127.1/", verdictNever, "127.0.0.1"},
		{"http://0177.0.0.1/", verdictNever, "127.0.0.1"},
		{"http://127.000.000.001/", verdictNever, "127.0.0.1"},
		{"http://0x7F.0X0.0.1/", verdictNever, "127.0.0.1"},
		{"http://2852039166/", verdictNever, "169.254.169.254"},
		{"http://134744072/", verdictNever, "8.8.8.8"},
		{"http://1.2.3.4.5/", verdictNever, "ends in a number"},
		{"http://example.123/", verdictNever, "ends in a number"},
		{"http://09.1/", verdictNever, "ends in a number"},
		{"http://4294967296/", verdictNever, "ends in a number"},
		{"http://0x/", verdictNever, "0.0.0.0"},

		// Always refused addresses.
		{"http://169.254.169.254/latest/meta-data/", verdictNever, "link-local"},
		{"http://169.254.0.1/", verdictNever, "link-local"},
		{"http://[fe80::1]/", verdictNever, "link-local"},
		{"http://[fe80::1%25eth0]/", verdictNever, "link-local"},
		{"http://[febf:ffff::1]/", verdictNever, "link-local"},
		{"http://[::ffff:169.254.169.254]/", verdictNever, "IPv4-mapped"},
		{"http://[::ffff:a9fe:a9fe]/", verdictNever, "link-local"},
		{"http://[64:ff9b::a9fe:a9fe]/", verdictNever, "NAT64"},
		{"http://[2002:a9fe:a9fe::1]/", verdictNever, "6to4"},
		{"http://[::169.254.169.254]/", verdictNever, "IPv4-compatible"},
		{"http://[::ffff:0:a9fe:a9fe]/", verdictNever, "IPv4-translated"},
		{"http://0.0.0.0/", verdictNever, "unspecified"},
		{"http://0.1.2.3/", verdictNever, "0.0.0.0/8"},
		{"http://[::]/", verdictNever, "unspecified"},
		{"http://[::ffff:0.0.0.0]/", verdictNever, "unspecified"},
		{"http://100.100.100.200/", verdictNever, "metadata"},
		{"http://[fd00:ec2::254]/", verdictNever, "metadata"},
		{"http://168.63.129.16/", verdictNever, "metadata"},
		{"http://metadata.google.internal/computeMetadata/v1/", verdictNever, "metadata"},
		{"http://METADATA.google.internal./", verdictNever, "metadata"},
		{"http://224.0.0.1/", verdictNever, "multicast"},
		{"http://[ff02::1]/", verdictNever, "multicast"},
		{"http://255.255.255.255/", verdictNever, "broadcast"},
		{"http://240.0.0.1/", verdictNever, "reserved"},

		// Refused unless allowPrivate.
		{"http://127.0.0.1:8080/hook", verdictPrivate, "--webhook-allow-private"},
		{"http://127.255.255.254/", verdictPrivate, "loopback"},
		{"http://[::1]:8080/", verdictPrivate, "loopback"},
		{"http://[::ffff:127.0.0.1]/", verdictPrivate, "IPv4-mapped"},
		{"http://[::127.0.0.1]/", verdictPrivate, "IPv4-compatible"},
		{"http://localhost/", verdictPrivate, "--webhook-allow-private"},
		{"http://LocalHost:3000/", verdictPrivate, "loopback"},
		{"http://localhost./", verdictPrivate, "loopback"},
		{"http://api.localhost/", verdictPrivate, "loopback"},
		{"http://localhost.localdomain/", verdictPrivate, "loopback"},
		{"http://ip6-localhost/", verdictPrivate, "loopback"},
		{"http://10.0.0.1/", verdictPrivate, "private"},
		{"http://10.255.255.255/", verdictPrivate, "private"},
		{"http://172.16.0.1/", verdictPrivate, "private"},
		{"http://172.31.255.255/", verdictPrivate, "private"},
		{"http://192.168.1.10/", verdictPrivate, "private"},
		{"http://[fc00::1]/", verdictPrivate, "private"},
		{"http://[fd12:3456::1]/", verdictPrivate, "private"},
		{"http://[::ffff:10.0.0.1]/", verdictPrivate, "private"},
		{"http://[64:ff9b::a00:1]/", verdictPrivate, "NAT64"},
		{"http://100.64.0.1/", verdictPrivate, "carrier-grade NAT"},
		{"http://100.127.255.255/", verdictPrivate, "carrier-grade NAT"},
		{"http://[fec0::1]/", verdictPrivate, "site-local"},
		{"http://[64:ff9b:1::1]/", verdictPrivate, "NAT64"},
	}
	for _, tc := range tests {
		for _, allow := range []bool{false, true} {
			err := ValidateURL(tc.url, allow)
			wantOK := tc.want == verdictOK || (tc.want == verdictPrivate && allow)
			if wantOK {
				if err != nil {
					t.Errorf("ValidateURL(%q, allowPrivate=%v) = %v, want accepted", tc.url, allow, err)
				}
				continue
			}
			var ue *URLError
			if !errors.As(err, &ue) {
				t.Errorf("ValidateURL(%q, allowPrivate=%v) = %v (%T), want a *URLError", tc.url, allow, err, err)
				continue
			}
			if !strings.Contains(ue.Reason, tc.msg) {
				t.Errorf("ValidateURL(%q, allowPrivate=%v) = %q, want it to mention %q", tc.url, allow, ue.Reason, tc.msg)
			}
			if ue.Private != (tc.want == verdictPrivate) {
				t.Errorf("ValidateURL(%q): Private = %v, want %v", tc.url, ue.Private, tc.want == verdictPrivate)
			}
			if tc.want == verdictPrivate && !strings.Contains(ue.Reason, AllowPrivateFlag) {
				t.Errorf("ValidateURL(%q) = %q, want it to name %s", tc.url, ue.Reason, AllowPrivateFlag)
			}
		}
	}
}

func TestCheckIP(t *testing.T) {
	tests := []struct {
		ip   string
		want urlVerdict
	}{
		{"8.8.8.8", verdictOK},
		{"2001:4860:4860::8888", verdictOK},
		{"::ffff:1.1.1.1", verdictOK},
		{"2002:808:808::1", verdictOK}, // 6to4 of 8.8.8.8
		{"127.0.0.1", verdictPrivate},
		{"::1", verdictPrivate},
		{"10.1.2.3", verdictPrivate},
		{"fd00::1", verdictPrivate},
		{"100.64.0.0", verdictPrivate},
		{"169.254.169.254", verdictNever},
		{"fe80::1%eth0", verdictNever},
		{"0.0.0.0", verdictNever},
		{"::", verdictNever},
		{"ff02::1", verdictNever},
		{"192.0.0.192", verdictNever}, // Oracle Cloud's metadata service
		{"192.0.0.8", verdictPrivate},
		{"198.18.0.1", verdictPrivate},
		{"203.0.113.9", verdictPrivate},
		{"100::1", verdictPrivate},
		{"2001::a9fe:a9fe", verdictPrivate}, // Teredo
		{"2001:db8::1", verdictPrivate},
		{"2001:4860::1", verdictOK}, // outside 2001::/23
	}
	for _, tc := range tests {
		ip := netip.MustParseAddr(tc.ip)
		for _, allow := range []bool{false, true} {
			err := CheckIP(ip, allow)
			wantOK := tc.want == verdictOK || (tc.want == verdictPrivate && allow)
			if (err == nil) != wantOK {
				t.Errorf("CheckIP(%s, %v) = %v, want accepted=%v", tc.ip, allow, err, wantOK)
			}
		}
	}
	if err := CheckIP(netip.Addr{}, true); err == nil {
		t.Error("CheckIP of the zero Addr accepted")
	}
}

func TestParseLegacyIPv4(t *testing.T) {
	for in, want := range map[string]string{
		"2130706433":      "127.0.0.1",
		"0x7f.1":          "127.0.0.1",
		"127.1":           "127.0.0.1",
		"127.0.1":         "127.0.0.1",
		"0177.0.0.01":     "127.0.0.1",
		"192.168.0x101":   "192.168.1.1",
		"0":               "0.0.0.0",
		"0x":              "0.0.0.0",
		"4294967295":      "255.255.255.255",
		"1.2.3.4":         "1.2.3.4",
		"1.2.65535":       "1.2.255.255",
		"1.16777215":      "1.255.255.255",
		"4294967296":      "",
		"256.1":           "",
		"1.2.65536":       "",
		"1.2.3.4.5":       "",
		"08":              "",
		"0xg":             "",
		"1..2":            "",
		"99999999999999x": "",
	} {
		ip, ok := parseLegacyIPv4(in)
		got := ""
		if ok {
			got = ip.String()
		}
		if got != want {
			t.Errorf("parseLegacyIPv4(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDialerRefusesAtConnect: a URL that passes ValidateURL (a host name)
// but resolves to loopback is refused when the connection is made, and the
// *URLError survives the net and net/http wrapping.
func TestDialerRefusesAtConnect(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	client := func(allow bool) *http.Client {
		return &http.Client{
			Timeout: 5 * time.Second,
			Transport: &http.Transport{
				Proxy:             nil,
				DialContext:       NewDialer(allow, 2*time.Second).DialContext,
				DisableKeepAlives: true,
			},
		}
	}
	for _, target := range []string{
		srv.URL,                              // 127.0.0.1:port
		"http://localhost:" + u.Port() + "/", // resolved by the dialer
	} {
		resp, err := client(false).Get(target)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("GET %s with allowPrivate=false: status %d, want refused", target, resp.StatusCode)
		}
		var ue *URLError
		if !errors.As(err, &ue) {
			t.Fatalf("GET %s: %v (%T), want a *URLError inside", target, err, err)
		}
		if !ue.Private || !strings.Contains(ue.Reason, AllowPrivateFlag) {
			t.Errorf("GET %s: %q", target, ue.Reason)
		}
		t.Logf("refused: %v", err)

		resp, err = client(true).Get(target)
		if err != nil {
			t.Fatalf("GET %s with allowPrivate=true: %v", target, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("GET %s: status %d", target, resp.StatusCode)
		}
	}
}

func TestDialerAlwaysRefusesLinkLocal(t *testing.T) {
	d := NewDialer(true, time.Second)
	for _, addr := range []string{"169.254.169.254:80", "[fe80::1]:80", "0.0.0.0:80", "[::ffff:169.254.169.254]:80"} {
		if err := d.Control("tcp", addr, nil); err == nil {
			t.Errorf("Control(%s) with allowPrivate=true accepted", addr)
		}
	}
	if err := d.Control("tcp", "8.8.8.8:443", nil); err != nil {
		t.Errorf("Control(8.8.8.8:443): %v", err)
	}
	if err := d.Control("unix", "/run/x.sock", nil); err == nil {
		t.Error("Control of a non-IP address accepted")
	}
	if d.Timeout != time.Second {
		t.Errorf("Timeout = %v", d.Timeout)
	}
}

// FuzzValidateURL: never panics; whatever it accepts is an absolute http or
// https URL with a host, no credentials, within the length limit, and, when
// the host is an IP literal, an allowed address.
func FuzzValidateURL(f *testing.F) {
	for _, s := range []string{
		"https://example.com/hooks", "http://127.0.0.1:8080/", "http://[::ffff:169.254.169.254]/",
		"http://2130706433/", "http://0x7f.1/", "ftp://x/", "http://u:p@x/", "http:x", "http://[fe80::1%25en0]/",
		"http://localhost./", "HTTP://EXAMPLE.COM", "http://%6c%6f%63%61%6c%68%6f%73%74/", "",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw string, allow bool) {
		err := ValidateURL(raw, allow)
		if err != nil {
			var ue *URLError
			if !errors.As(err, &ue) || ue.Reason == "" {
				t.Fatalf("ValidateURL(%q) = %v (%T), want a *URLError with a reason", raw, err, err)
			}
			return
		}
		u, perr := url.Parse(raw)
		if perr != nil {
			t.Fatalf("accepted %q, which does not parse: %v", raw, perr)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("accepted %q with scheme %q", raw, u.Scheme)
		}
		if u.Hostname() == "" || u.User != nil || u.Opaque != "" || len(raw) > MaxURLLength {
			t.Fatalf("accepted %q: host %q, user %v, opaque %q", raw, u.Hostname(), u.User, u.Opaque)
		}
		if ip, err := netip.ParseAddr(u.Hostname()); err == nil {
			if CheckIP(ip, allow) != nil {
				t.Fatalf("accepted %q with a refused address", raw)
			}
			if !allow && (ip.Unmap().IsLoopback() || ip.Unmap().IsPrivate()) {
				t.Fatalf("accepted %q (loopback or private) without allowPrivate", raw)
			}
			if ip.Unmap().IsLinkLocalUnicast() || ip.Unmap().IsUnspecified() {
				t.Fatalf("accepted %q (link-local or unspecified)", raw)
			}
		} else if _, legacy := parseLegacyIPv4(strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))); legacy {
			t.Fatalf("accepted %q, a numeric IPv4 form", raw)
		}
	})
}
