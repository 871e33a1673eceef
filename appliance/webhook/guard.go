package webhook

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"
)

// The URL guard keeps webhooks from being turned against the server's own
// network (SSRF). It works in two places:
//
//   - ValidateURL, when an endpoint is created or changed: the URL's shape,
//     and its host when that is an IP literal or a well-known local name.
//   - NewDialer, at delivery time: its Control hook sees every address a
//     connection is about to be made to, after DNS resolution, and refuses
//     forbidden ones. So a host name that resolved to a public address when
//     the endpoint was saved and is re-pointed at 127.0.0.1 or the metadata
//     service later (DNS rebinding) is still refused, on every attempt.
//
// Address classes (CheckIP):
//
//	always refused       0.0.0.0/8, ::, link-local 169.254.0.0/16 and fe80::/10
//	                     (cloud metadata), the metadata addresses 100.100.100.200,
//	                     fd00:ec2::254 and 168.63.129.16, multicast, 240.0.0.0/4
//	                     and broadcast
//	--webhook-allow-private
//	                     loopback 127.0.0.0/8 and ::1, private 10.0.0.0/8,
//	                     172.16.0.0/12, 192.168.0.0/16 and fc00::/7, carrier-grade
//	                     NAT 100.64.0.0/10, site-local fec0::/10, local NAT64
//	                     64:ff9b:1::/48
//	everything else      allowed
//
// IPv6 forms that carry an IPv4 address (IPv4-mapped ::ffff:a.b.c.d,
// IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16) are judged
// by the IPv4 address they carry.

// MaxURLLength is the longest webhook URL ValidateURL accepts, in bytes.
const MaxURLLength = 2048

// AllowPrivateFlag is the server flag that lets webhooks go to loopback and
// private addresses; error messages name it.
const AllowPrivateFlag = "--webhook-allow-private"

// URLError is a refused webhook URL or address. Reason is one or two
// sentences for the person who gave the URL: what is wrong and what to do.
type URLError struct {
	Reason string
	// Private is true when the refusal is lifted by running the server with
	// --webhook-allow-private (loopback, private and CGNAT targets).
	Private bool
}

func (e *URLError) Error() string { return e.Reason }

func urlErr(format string, args ...any) *URLError {
	return &URLError{Reason: fmt.Sprintf(format, args...)}
}

const urlExample = "https://example.com/hooks/walytic"

// ValidateURL checks a webhook URL before it is stored. It must parse as an
// absolute http or https URL of at most MaxURLLength bytes with a host and no
// user:password@ part. A host that is an IP literal must pass CheckIP; a host
// written as a number in a non-standard form ("2130706433", "0x7f.1",
// "127.1", "010.0.0.1") is refused outright, as are local names (localhost,
// *.localhost) unless allowPrivate, and cloud metadata names always. Host
// names must be ASCII (write internationalized names in their xn-- form).
// Other host names are not resolved here: NewDialer checks the addresses they
// resolve to on every delivery. The error is a *URLError.
func ValidateURL(raw string, allowPrivate bool) error {
	if raw == "" {
		return urlErr("The webhook URL is empty; give an http or https URL such as %s.", urlExample)
	}
	if len(raw) > MaxURLLength {
		return urlErr("The webhook URL is %d bytes long; the limit is %d. Use a shorter URL.", len(raw), MaxURLLength)
	}
	for i, r := range raw {
		if r <= ' ' || unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			// url.Parse lets a space through in a path (a pasted URL's
			// trailing one, a no-break space, an invisible zero-width
			// one), and it would be stored and posted to.
			return urlErr("The webhook URL has a space, an invisible or a control character at byte %d; remove it, or percent-encode it (a space is %%20).", i)
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		var reason string
		if ue, ok := err.(*url.Error); ok {
			reason = ue.Err.Error()
		} else {
			reason = err.Error()
		}
		return urlErr("The webhook URL cannot be parsed (%s); give a full http or https URL such as %s.", reason, urlExample)
	}
	switch u.Scheme {
	case "http", "https":
	case "":
		return urlErr("The webhook URL has no scheme; it must start with https:// or http://, as in %s.", urlExample)
	default:
		return urlErr("The webhook URL uses the scheme %q; only http and https are allowed, as in %s.", u.Scheme, urlExample)
	}
	if u.Opaque != "" {
		return urlErr("The webhook URL must be of the form %s://host/path, with the two slashes.", u.Scheme)
	}
	if u.User != nil {
		return urlErr("The webhook URL contains credentials (user:password@), which would be stored and logged with it; remove them and check the request's signature instead, or put a token in the path or query.")
	}
	host := u.Hostname()
	if host == "" {
		return urlErr("The webhook URL has no host; give one, as in %s.", urlExample)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return urlErr("The webhook URL's port %q is not a port number from 1 to 65535.", p)
		}
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return CheckIP(ip, allowPrivate)
	}
	if strings.HasPrefix(u.Host, "[") {
		return urlErr("The webhook URL's host %q is in brackets but is not an IPv6 address.", u.Host)
	}
	return checkHostName(host, allowPrivate)
}

// checkHostName checks a host that is not an IP literal.
func checkHostName(host string, allowPrivate bool) error {
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		case c >= 0x80:
			return urlErr("The webhook URL's host %q is not ASCII; write an internationalized name in its punycode form (xn--…).", host)
		default:
			return urlErr("The webhook URL's host %q contains %q, which is not allowed in a host name.", host, string(c))
		}
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if len(name) > 253 {
		return urlErr("The webhook URL's host name is %d characters long; DNS names are at most 253.", len(name))
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" {
			return urlErr("The webhook URL's host %q has an empty label (two dots in a row, or a leading dot).", host)
		}
		if len(l) > 63 {
			return urlErr("The webhook URL's host %q has a label longer than 63 characters.", host)
		}
	}
	if isNumericLabel(labels[len(labels)-1]) {
		// Not an IP literal Go would parse, but one that inet_aton, many
		// resolvers and browsers read as an IPv4 address.
		if ip, ok := parseLegacyIPv4(name); ok {
			return urlErr("The webhook URL's host %q is an IPv4 address in a non-standard numeric form (it means %s); write addresses in dotted decimal, like 203.0.113.7.", host, ip)
		}
		return urlErr("The webhook URL's host %q ends in a number but is not an IP address; give a host name or a dotted-decimal IPv4 address.", host)
	}
	switch {
	case name == "metadata.google.internal":
		return urlErr("The webhook URL's host %q is a cloud metadata service; webhooks are never sent there.", host)
	case name == "localhost" || strings.HasSuffix(name, ".localhost") || name == "localhost.localdomain" ||
		name == "ip6-localhost" || name == "ip6-loopback":
		if allowPrivate {
			return nil
		}
		return &URLError{Private: true, Reason: fmt.Sprintf(
			"The webhook URL's host %q is this machine (loopback); webhooks go to loopback and private addresses only when the server runs with %s.", host, AllowPrivateFlag)}
	}
	return nil
}

// isNumericLabel reports whether a DNS label reads as a number: all decimal
// digits, or 0x followed by hex digits (WHATWG URL's "ends in a number").
func isNumericLabel(l string) bool {
	if h, ok := strings.CutPrefix(l, "0x"); ok {
		return strings.Trim(h, "0123456789abcdef") == ""
	}
	return l != "" && strings.Trim(l, "0123456789") == ""
}

// parseLegacyIPv4 parses the inet_aton forms of an IPv4 address: one to four
// dot-separated parts, each decimal, octal (leading 0) or hex (0x), the last
// part filling the remaining bytes. name is lower case.
func parseLegacyIPv4(name string) (netip.Addr, bool) {
	parts := strings.Split(name, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		base := 10
		switch {
		case strings.HasPrefix(p, "0x"):
			base, p = 16, p[2:]
			if p == "" {
				p = "0"
			}
		case len(p) > 1 && p[0] == '0':
			base, p = 8, p[1:]
		}
		v, err := strconv.ParseUint(p, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	last := len(vals) - 1
	var n uint64
	for i, v := range vals[:last] {
		if v > 0xff {
			return netip.Addr{}, false
		}
		n |= v << (8 * (3 - i))
	}
	if vals[last] >= 1<<(8*(4-last)) {
		return netip.Addr{}, false
	}
	n |= vals[last]
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

var (
	prefixThisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	prefixCGNAT       = netip.MustParsePrefix("100.64.0.0/10")
	prefixReserved4   = netip.MustParsePrefix("240.0.0.0/4") // includes 255.255.255.255
	prefixSiteLocal6  = netip.MustParsePrefix("fec0::/10")
	prefixNAT64Local  = netip.MustParsePrefix("64:ff9b:1::/48")
	prefixNAT64       = netip.MustParsePrefix("64:ff9b::/96")
	prefixV4Compat    = netip.MustParsePrefix("::/96")
	prefixV4Translate = netip.MustParsePrefix("::ffff:0:0:0/96")
	prefix6to4        = netip.MustParsePrefix("2002::/16")
	metadataAddrs     = []netip.Addr{
		netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
		netip.MustParseAddr("fd00:ec2::254"),   // AWS IMDS over IPv6
		netip.MustParseAddr("168.63.129.16"),   // Azure platform (WireServer)
		netip.MustParseAddr("192.0.0.192"),     // Oracle Cloud
	}
	// specialPurpose are IANA special-purpose ranges that are not globally
	// reachable (RFC 6890 and its registries): nothing public answers there,
	// so only a private network could.
	specialPurpose = []netip.Prefix{
		netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
		netip.MustParsePrefix("192.0.2.0/24"),    // documentation
		netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
		netip.MustParsePrefix("198.51.100.0/24"), // documentation
		netip.MustParsePrefix("203.0.113.0/24"),  // documentation
		netip.MustParsePrefix("100::/64"),        // discard-only
		netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments (Teredo, ORCHID, …)
		netip.MustParsePrefix("2001:db8::/32"),   // documentation
	}
)

// CheckIP reports whether a webhook may connect to ip: nil, or a *URLError
// that names the address's class (see the table above) and, for loopback
// and private classes, the --webhook-allow-private flag. Zones are ignored.
func CheckIP(ip netip.Addr, allowPrivate bool) error {
	return checkIP("The webhook address "+ip.WithZone("").String()+" is", ip, allowPrivate)
}

// checkIP is CheckIP with the start of the reason's sentence ("The webhook
// address 10.0.0.1 is").
func checkIP(subject string, ip netip.Addr, allowPrivate bool) error {
	if !ip.IsValid() {
		return urlErr("The webhook address is not a valid IP address.")
	}
	class, private := classify(ip.WithZone(""), 0)
	switch {
	case class == "":
		return nil
	case private && allowPrivate:
		return nil
	case private:
		return &URLError{Private: true, Reason: fmt.Sprintf(
			"%s %s; webhooks go to loopback and private addresses only when the server runs with %s.", subject, class, AllowPrivateFlag)}
	default:
		return urlErr("%s %s; webhooks are never sent there. Give a public address or host name.", subject, class)
	}
}

// classify names the class of a refused address ("" when allowed) and
// whether --webhook-allow-private lifts the refusal.
func classify(ip netip.Addr, depth int) (class string, private bool) {
	if ip.Is4In6() {
		c, p := classify(ip.Unmap(), depth+1)
		if c != "" {
			c = "an IPv4-mapped form of " + ip.Unmap().String() + ", " + c
		}
		return c, p
	}
	for _, m := range metadataAddrs {
		if ip == m {
			return "a cloud metadata service address", false
		}
	}
	switch {
	case ip.IsUnspecified():
		return "the unspecified address, which reaches this machine", false
	case prefixThisNetwork.Contains(ip):
		return "in 0.0.0.0/8 (\"this network\"), which reaches this machine", false
	case ip.IsLinkLocalUnicast():
		return "a link-local address (169.254.0.0/16 or fe80::/10), where cloud metadata services live", false
	case ip.IsMulticast():
		return "a multicast address", false
	case prefixReserved4.Contains(ip):
		return "a reserved or broadcast address (240.0.0.0/4)", false
	case ip.IsLoopback():
		return "a loopback address (this machine)", true
	case ip.IsPrivate():
		return "a private address (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or fc00::/7)", true
	case prefixCGNAT.Contains(ip):
		return "a carrier-grade NAT address (100.64.0.0/10)", true
	case prefixSiteLocal6.Contains(ip):
		return "a site-local IPv6 address (fec0::/10)", true
	case prefixNAT64Local.Contains(ip):
		return "a local-use NAT64 address (64:ff9b:1::/48)", true
	}
	for _, p := range specialPurpose {
		if p.Contains(ip) {
			return "in " + p.String() + ", a special-purpose range that is not publicly reachable", true
		}
	}
	if depth == 0 && ip.Is6() {
		b := ip.As16()
		var v4 netip.Addr
		var form string
		switch {
		case prefixV4Compat.Contains(ip):
			v4, form = netip.AddrFrom4([4]byte(b[12:16])), "an IPv4-compatible form"
		case prefixV4Translate.Contains(ip):
			v4, form = netip.AddrFrom4([4]byte(b[12:16])), "an IPv4-translated form"
		case prefixNAT64.Contains(ip):
			v4, form = netip.AddrFrom4([4]byte(b[12:16])), "a NAT64 form"
		case prefix6to4.Contains(ip):
			v4, form = netip.AddrFrom4([4]byte(b[2:6])), "a 6to4 form"
		}
		if v4.IsValid() {
			if c, p := classify(v4, depth+1); c != "" {
				return form + " of " + v4.String() + ", " + c, p
			}
		}
	}
	return "", false
}

// NewDialer returns a dialer for webhook deliveries whose Control hook runs
// CheckIP on every address it is about to connect to, after DNS resolution,
// and refuses forbidden ones with a *URLError (wrapped by net and net/http
// errors; errors.As finds it). A host name that resolves to several
// addresses is refused only on the forbidden ones. timeout bounds each
// connection attempt (0: none).
//
// Use its DialContext as the http.Transport's DialContext, and set the
// transport's Proxy to nil: through a proxy the hook would only see the
// proxy's address.
func NewDialer(allowPrivate bool, timeout time.Duration) *net.Dialer {
	return &net.Dialer{
		Timeout: timeout,
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return urlErr("the webhook guard cannot read the address %q it is connecting to (%s network), so it refuses it", address, network)
			}
			return checkIP("the webhook host resolved to "+ap.Addr().WithZone("").String()+", which is", ap.Addr(), allowPrivate)
		},
	}
}
