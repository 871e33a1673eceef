// Package fakewa is an in-process fake of WhatsApp's web-socket server, for
// tests only. The real whatsmeow client connects to it through
// Server.HTTPClient (a transport whose DialTLSContext dials a loopback
// listener): it speaks the real framing (WA header, 3-byte length frames),
// the Noise_XX handshake with a certificate chain signed by a test root
// (install it with `whatsmeow.WACertPubKey = fakewa.RootPub()`), and
// WhatsApp's binary XML nodes, encrypted per frame with AES-GCM.
//
// What it models: login (<success>) or, for an unpaired device, a
// pair-device iq with QR refs; completing a QR pairing as a phone would
// (Server.ScanQR builds a signed device identity from the QR's keys and
// sends pair-success, then the 515 stream error that makes the client log
// in again); answers to the iqs whatsmeow sends after login (pre-key count
// and upload, passive, keep-alive pings, logout); usync contact and device
// queries (a number is on WhatsApp unless the test says otherwise; users
// have no companion devices, so sends carry no Signal payload); an ack with
// the server timestamp (or an error code) for every message; and hooks for
// a test to push receipts, stream errors and failure nodes, or to drop the
// socket. It does not model Signal sessions, pre-key bundles, message
// delivery to other users, app state, media or groups.
package fakewa

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/whatsmeow"
	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waAdv"
	"go.mau.fi/whatsmeow/proto/waCert"
	"go.mau.fi/whatsmeow/proto/waWa6"
	"go.mau.fi/whatsmeow/socket"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"
	"google.golang.org/protobuf/proto"
)

var (
	rootOnce sync.Once
	root     *keys.KeyPair
)

// RootPub is the public key of the test certificate root every Server
// signs with; assign it to whatsmeow.WACertPubKey before connecting.
func RootPub() [32]byte {
	rootOnce.Do(func() { root = keys.NewKeyPair() })
	return *root.Pub
}

func sign(kp *keys.KeyPair, msg []byte) []byte {
	s := ecc.CalculateSignature(ecc.NewDjbECPrivateKey(*kp.Priv), msg)
	return s[:]
}

// Server is one fake WhatsApp endpoint on a loopback port.
type Server struct {
	ln     net.Listener
	http   *http.Server
	static *keys.KeyPair
	cert   []byte

	// NotOnWhatsApp reports whether a number (digits) has no account; nil
	// means every number has one.
	NotOnWhatsApp func(number string) bool
	// SendErrorCode, if non-zero, is put in the ack of every message
	// ("error" attribute), as WhatsApp does for refused sends.
	SendErrorCode atomic.Int32
	// LoginFailure, if non-zero, answers a login with <failure reason=N>
	// instead of <success>.
	LoginFailure atomic.Int32
	// NoAutoLogin makes the server wait for the test to call Conn.Login.
	NoAutoLogin atomic.Bool
	// HoldPassive leaves the passive iq a client sends after login
	// unanswered, as a socket that dies at that moment would.
	HoldPassive atomic.Bool

	mu      sync.Mutex
	conns   []*Conn
	newConn chan *Conn
	closed  bool
	refSeq  int
	logouts int
}

// New starts a server on 127.0.0.1.
func New() (*Server, error) {
	RootPub()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, static: keys.NewKeyPair(), newConn: make(chan *Conn, 64)}
	inter := keys.NewKeyPair()
	interDetails, _ := proto.Marshal(&waCert.CertChain_NoiseCertificate_Details{
		Serial: proto.Uint32(7), IssuerSerial: proto.Uint32(whatsmeow.WACertIssuerSerial), Key: inter.Pub[:],
	})
	leafDetails, _ := proto.Marshal(&waCert.CertChain_NoiseCertificate_Details{
		Serial: proto.Uint32(8), IssuerSerial: proto.Uint32(7), Key: s.static.Pub[:],
	})
	s.cert, _ = proto.Marshal(&waCert.CertChain{
		Intermediate: &waCert.CertChain_NoiseCertificate{Details: interDetails, Signature: sign(root, interDetails)},
		Leaf:         &waCert.CertChain_NoiseCertificate{Details: leafDetails, Signature: sign(inter, leafDetails)},
	})
	s.http = &http.Server{Handler: http.HandlerFunc(s.serveWS), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.http.Serve(ln) }()
	return s, nil
}

// HTTPClient returns a client whose every TLS dial reaches this server
// (plain TCP: the transport takes the connection as already secured).
func (s *Server) HTTPClient() *http.Client {
	addr := s.ln.Addr().String()
	return &http.Client{Transport: &http.Transport{
		DialTLSContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
	}}
}

// Close stops the server and drops every connection.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	conns := append([]*Conn(nil), s.conns...)
	s.mu.Unlock()
	for _, c := range conns {
		c.Drop()
	}
	_ = s.http.Close()
}

// NextConn waits for the next client to finish the Noise handshake.
func (s *Server) NextConn(ctx context.Context) (*Conn, error) {
	select {
	case c := <-s.newConn:
		return c, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("fakewa: no client connected: %w", ctx.Err())
	}
}

// Logouts counts remove-companion-device requests.
func (s *Server) Logouts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logouts
}

// Conn is one client connection after the handshake.
type Conn struct {
	s       *Server
	ws      *websocket.Conn
	ctx     context.Context
	cancel  context.CancelFunc
	Payload *waWa6.ClientPayload // the client's login or registration payload

	readKey, writeKey cipher.AEAD
	readN, writeN     uint32
	wmu               sync.Mutex

	mu       sync.Mutex
	received []*waBinary.Node
	recvCh   chan struct{}
	refs     []string
	idSeq    int
	done     chan struct{}
}

// Registration reports whether the client came to pair (no device id yet).
func (c *Conn) Registration() bool { return c.Payload.Username == nil }

// User is the phone number the client logs in as ("" when registering).
func (c *Conn) User() string {
	if c.Payload.Username == nil {
		return ""
	}
	return strconv.FormatUint(c.Payload.GetUsername(), 10)
}

// Done is closed when the connection ends.
func (c *Conn) Done() <-chan struct{} { return c.done }

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	ws.SetReadLimit(socket.FrameMaxSize)
	ctx, cancel := context.WithCancel(context.Background())
	c := &Conn{s: s, ws: ws, ctx: ctx, cancel: cancel, recvCh: make(chan struct{}, 1), done: make(chan struct{})}
	defer close(c.done)
	defer cancel()
	defer ws.CloseNow()
	frames := make(chan []byte, 64)
	go c.readFrames(frames)
	if err := c.handshake(frames); err != nil {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.conns = append(s.conns, c)
	s.mu.Unlock()
	s.newConn <- c
	if !s.NoAutoLogin.Load() {
		c.Login()
	}
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				return
			}
			pt, err := c.readKey.Open(nil, iv(c.readN), f, nil)
			c.readN++
			if err != nil {
				return
			}
			data, err := waBinary.Unpack(pt)
			if err != nil {
				return
			}
			node, err := waBinary.Unmarshal(data)
			if err != nil {
				return
			}
			c.handle(node)
		case <-ctx.Done():
			return
		}
	}
}

// readFrames splits the web-socket stream into frames (dropping the
// one-time WA header) until the socket ends.
func (c *Conn) readFrames(out chan<- []byte) {
	defer close(out)
	var buf []byte
	header := true
	for {
		_, data, err := c.ws.Read(c.ctx)
		if err != nil {
			return
		}
		buf = append(buf, data...)
		if header {
			if len(buf) < len(socket.WAConnHeader) {
				continue
			}
			if !bytes.Equal(buf[:len(socket.WAConnHeader)], socket.WAConnHeader) {
				return
			}
			buf = buf[len(socket.WAConnHeader):]
			header = false
		}
		for len(buf) >= 3 {
			n := int(buf[0])<<16 | int(buf[1])<<8 | int(buf[2])
			if len(buf) < 3+n {
				break
			}
			frame := append([]byte(nil), buf[3:3+n]...)
			buf = buf[3+n:]
			select {
			case out <- frame:
			case <-c.ctx.Done():
				return
			}
		}
	}
}

func (c *Conn) writeFrame(data []byte) error {
	frame := make([]byte, 3+len(data))
	frame[0], frame[1], frame[2] = byte(len(data)>>16), byte(len(data)>>8), byte(len(data))
	copy(frame[3:], data)
	return c.ws.Write(c.ctx, websocket.MessageBinary, frame)
}

func (c *Conn) handshake(frames <-chan []byte) error {
	next := func() ([]byte, error) {
		select {
		case f, ok := <-frames:
			if !ok {
				return nil, errors.New("closed during handshake")
			}
			return f, nil
		case <-time.After(10 * time.Second):
			return nil, errors.New("handshake timeout")
		}
	}
	f, err := next()
	if err != nil {
		return err
	}
	var hello waWa6.HandshakeMessage
	if err := proto.Unmarshal(f, &hello); err != nil {
		return err
	}
	clientEph := hello.GetClientHello().GetEphemeral()
	if len(clientEph) != 32 {
		return errors.New("bad client ephemeral")
	}
	ce := (*[32]byte)(clientEph)
	var n noise
	n.start(socket.NoiseStartPattern, socket.WAConnHeader)
	n.authenticate(clientEph)
	eph := keys.NewKeyPair()
	n.authenticate(eph.Pub[:])
	if err := n.mixShared(eph.Priv, ce); err != nil {
		return err
	}
	staticCT := n.encrypt(c.s.static.Pub[:])
	if err := n.mixShared(c.s.static.Priv, ce); err != nil {
		return err
	}
	certCT := n.encrypt(c.s.cert)
	out, _ := proto.Marshal(&waWa6.HandshakeMessage{ServerHello: &waWa6.HandshakeMessage_ServerHello{
		Ephemeral: eph.Pub[:], Static: staticCT, Payload: certCT,
	}})
	if err := c.writeFrame(out); err != nil {
		return err
	}
	f, err = next()
	if err != nil {
		return err
	}
	var fin waWa6.HandshakeMessage
	if err := proto.Unmarshal(f, &fin); err != nil {
		return err
	}
	clientStatic, err := n.decrypt(fin.GetClientFinish().GetStatic())
	if err != nil || len(clientStatic) != 32 {
		return fmt.Errorf("client static: %v", err)
	}
	if err := n.mixShared(eph.Priv, (*[32]byte)(clientStatic)); err != nil {
		return err
	}
	payloadBytes, err := n.decrypt(fin.GetClientFinish().GetPayload())
	if err != nil {
		return fmt.Errorf("client payload: %w", err)
	}
	var payload waWa6.ClientPayload
	if err := proto.Unmarshal(payloadBytes, &payload); err != nil {
		return err
	}
	c.Payload = &payload
	c.readKey, c.writeKey = n.finish()
	return nil
}

// Send writes one node to the client.
func (c *Conn) Send(n waBinary.Node) error {
	data, err := waBinary.Marshal(n)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	ct := c.writeKey.Seal(nil, iv(c.writeN), data, nil)
	c.writeN++
	return c.writeFrame(ct)
}

// Drop closes the socket abruptly, as a network failure would.
func (c *Conn) Drop() {
	c.cancel()
	_ = c.ws.CloseNow()
}

// StreamError sends <stream:error code=…><conflict type=…/></stream:error>
// (either part may be empty) and closes the socket, as WhatsApp does.
func (c *Conn) StreamError(code, conflict string) {
	n := waBinary.Node{Tag: "stream:error", Attrs: waBinary.Attrs{}}
	if code != "" {
		n.Attrs["code"] = code
	}
	if conflict != "" {
		n.Content = []waBinary.Node{{Tag: "conflict", Attrs: waBinary.Attrs{"type": conflict}}}
	}
	_ = c.Send(n)
	time.Sleep(50 * time.Millisecond) // let the client read it before the close
	c.Drop()
}

// Failure sends <failure reason=N …attrs/> and closes the socket.
func (c *Conn) Failure(reason int, attrs map[string]string) {
	a := waBinary.Attrs{"reason": strconv.Itoa(reason)}
	for k, v := range attrs {
		a[k] = v
	}
	_ = c.Send(waBinary.Node{Tag: "failure", Attrs: a})
	time.Sleep(50 * time.Millisecond)
	c.Drop()
}

// Login answers the handshake: <success> for a paired device (or the
// configured failure), a pair-device iq with six QR refs for a new one.
func (c *Conn) Login() {
	if c.Registration() {
		c.mu.Lock()
		c.s.mu.Lock()
		for i := 0; i < 6; i++ {
			c.s.refSeq++
			c.refs = append(c.refs, fmt.Sprintf("2@fakewa-ref-%d", c.s.refSeq))
		}
		c.s.mu.Unlock()
		refs := make([]waBinary.Node, len(c.refs))
		for i, r := range c.refs {
			refs[i] = waBinary.Node{Tag: "ref", Content: []byte(r)}
		}
		c.mu.Unlock()
		_ = c.Send(waBinary.Node{Tag: "iq", Attrs: waBinary.Attrs{"from": types.ServerJID, "type": "set", "id": c.nextID("pair"), "xmlns": "md"},
			Content: []waBinary.Node{{Tag: "pair-device", Content: refs}}})
		return
	}
	if r := c.s.LoginFailure.Load(); r != 0 {
		c.Failure(int(r), nil)
		return
	}
	_ = c.Send(waBinary.Node{Tag: "success", Attrs: waBinary.Attrs{
		"t":   strconv.FormatInt(time.Now().Unix(), 10),
		"lid": types.JID{User: "1" + c.User(), Device: uint16(c.Payload.GetDevice()), Server: types.HiddenUserServer},
	}})
}

func (c *Conn) nextID(prefix string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idSeq++
	return fmt.Sprintf("%s-%d", prefix, c.idSeq)
}

// PushReceipt sends a receipt from `from` (digits) for message ids;
// typ is "" (delivered), "read" or "played".
func (c *Conn) PushReceipt(from, typ string, ids ...string) error {
	attrs := waBinary.Attrs{
		"from": types.NewJID(from, types.DefaultUserServer),
		"id":   ids[0],
		"t":    strconv.FormatInt(time.Now().Unix(), 10),
	}
	if typ != "" {
		attrs["type"] = typ
	}
	n := waBinary.Node{Tag: "receipt", Attrs: attrs}
	if len(ids) > 1 {
		items := make([]waBinary.Node, 0, len(ids)-1)
		for _, id := range ids[1:] {
			items = append(items, waBinary.Node{Tag: "item", Attrs: waBinary.Attrs{"id": id}})
		}
		n.Content = []waBinary.Node{{Tag: "list", Content: items}}
	}
	return c.Send(n)
}

// Received returns the nodes the client sent so far.
func (c *Conn) Received() []*waBinary.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*waBinary.Node(nil), c.received...)
}

// WaitReceived waits for a node the client sent that match accepts.
func (c *Conn) WaitReceived(ctx context.Context, match func(*waBinary.Node) bool) (*waBinary.Node, error) {
	for {
		for _, n := range c.Received() {
			if match(n) {
				return n, nil
			}
		}
		select {
		case <-c.recvCh:
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (c *Conn) handle(n *waBinary.Node) {
	c.mu.Lock()
	c.received = append(c.received, n)
	c.mu.Unlock()
	select {
	case c.recvCh <- struct{}{}:
	default:
	}
	switch n.Tag {
	case "iq":
		c.handleIQ(n)
	case "message":
		ag := n.AttrGetter()
		attrs := waBinary.Attrs{"class": "message", "id": ag.String("id"), "t": strconv.FormatInt(time.Now().Unix(), 10)}
		if to, ok := n.Attrs["to"].(types.JID); ok {
			attrs["from"] = to
		}
		if code := c.s.SendErrorCode.Load(); code != 0 {
			attrs["error"] = strconv.Itoa(int(code))
		}
		_ = c.Send(waBinary.Node{Tag: "ack", Attrs: attrs})
	}
}

func (c *Conn) result(req *waBinary.Node, content ...waBinary.Node) {
	n := waBinary.Node{Tag: "iq", Attrs: waBinary.Attrs{"id": req.Attrs["id"], "type": "result", "from": types.ServerJID}}
	if len(content) > 0 {
		n.Content = content
	}
	_ = c.Send(n)
}

func (c *Conn) handleIQ(n *waBinary.Node) {
	typ, _ := n.Attrs["type"].(string)
	if typ == "result" || typ == "error" {
		// An answer to one of our iqs: the pairing confirmation ends with a
		// 515 stream error, after which the client logs in afresh.
		if _, ok := n.GetOptionalChildByTag("pair-device-sign"); ok {
			go c.StreamError("515", "")
		}
		return
	}
	xmlns, _ := n.Attrs["xmlns"].(string)
	if xmlns == "passive" && c.s.HoldPassive.Load() {
		return
	}
	switch xmlns {
	case "encrypt":
		if _, ok := n.GetOptionalChildByTag("count"); ok {
			c.result(n, waBinary.Node{Tag: "count", Attrs: waBinary.Attrs{"value": "50"}})
			return
		}
	case "usync":
		c.result(n, c.usync(n))
		return
	case "md":
		if _, ok := n.GetOptionalChildByTag("remove-companion-device"); ok {
			c.s.mu.Lock()
			c.s.logouts++
			c.s.mu.Unlock()
			c.result(n)
			go func() {
				time.Sleep(20 * time.Millisecond)
				c.Drop()
			}()
			return
		}
	}
	c.result(n)
}

// usync answers contact queries (IsOnWhatsApp) and device-list queries
// (sending): every user has no companion devices.
func (c *Conn) usync(n *waBinary.Node) waBinary.Node {
	list, _ := n.GetOptionalChildByTag("usync", "list")
	var users []waBinary.Node
	for _, u := range list.GetChildren() {
		if contact, ok := u.GetOptionalChildByTag("contact"); ok {
			q := contactString(contact.Content)
			num := strings.TrimPrefix(strings.TrimSuffix(q, "@"+types.LegacyUserServer), "+")
			typ := "in"
			if c.s.NotOnWhatsApp != nil && c.s.NotOnWhatsApp(num) {
				typ = "out"
			}
			users = append(users, waBinary.Node{Tag: "user", Attrs: waBinary.Attrs{"jid": types.NewJID(num, types.DefaultUserServer)},
				Content: []waBinary.Node{{Tag: "contact", Attrs: waBinary.Attrs{"type": typ}, Content: []byte(q)}}})
			continue
		}
		if jid, ok := u.Attrs["jid"].(types.JID); ok {
			users = append(users, waBinary.Node{Tag: "user", Attrs: waBinary.Attrs{"jid": jid},
				Content: []waBinary.Node{{Tag: "devices", Content: []waBinary.Node{{Tag: "device-list"}}}}})
		}
	}
	return waBinary.Node{Tag: "usync", Content: []waBinary.Node{{Tag: "list", Content: users}}}
}

func contactString(v any) string {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case string:
		return x
	case types.JID:
		return x.String()
	}
	return fmt.Sprint(v)
}

// ScanQR does what a phone does when it scans a QR code: it finds the
// connection that offered the code's ref and sends it a pair-success for
// phone (digits), with a device identity signed by a fresh account key over
// the client's identity key and authenticated with its ADV secret, both read
// from the code. device is the companion device number the server assigns.
func (s *Server) ScanQR(code, phone string, device uint16) error {
	parts := strings.Split(code, ",")
	if len(parts) != 4 {
		return fmt.Errorf("fakewa: QR code %q has %d parts, want 4", code, len(parts))
	}
	identity, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(identity) != 32 {
		return fmt.Errorf("fakewa: QR identity key: %v", err)
	}
	adv, err := base64.StdEncoding.DecodeString(parts[3])
	if err != nil {
		return fmt.Errorf("fakewa: QR adv secret: %v", err)
	}
	var target *Conn
	s.mu.Lock()
	for _, c := range s.conns {
		c.mu.Lock()
		for _, r := range c.refs {
			if r == parts[0] {
				target = c
			}
		}
		c.mu.Unlock()
	}
	s.mu.Unlock()
	if target == nil {
		return fmt.Errorf("fakewa: no connection offered ref %q", parts[0])
	}
	details, _ := proto.Marshal(&waAdv.ADVDeviceIdentity{
		RawID: proto.Uint32(42), Timestamp: proto.Uint64(uint64(time.Now().Unix())), KeyIndex: proto.Uint32(1),
	})
	account := keys.NewKeyPair()
	msg := append(append(append([]byte(nil), whatsmeow.AdvAccountSignaturePrefix...), details...), identity...)
	signed, _ := proto.Marshal(&waAdv.ADVSignedDeviceIdentity{
		Details: details, AccountSignatureKey: account.Pub[:], AccountSignature: sign(account, msg),
	})
	mac := hmac.New(sha256.New, adv)
	mac.Write(signed)
	container, _ := proto.Marshal(&waAdv.ADVSignedDeviceIdentityHMAC{Details: signed, HMAC: mac.Sum(nil)})
	return target.Send(waBinary.Node{
		Tag:   "iq",
		Attrs: waBinary.Attrs{"from": types.ServerJID, "type": "set", "id": target.nextID("pair-success"), "xmlns": "md"},
		Content: []waBinary.Node{{Tag: "pair-success", Content: []waBinary.Node{
			{Tag: "device-identity", Content: container},
			{Tag: "platform", Attrs: waBinary.Attrs{"name": "android"}},
			{Tag: "device", Attrs: waBinary.Attrs{
				"jid": types.JID{User: phone, Device: device, Server: types.DefaultUserServer},
				"lid": types.JID{User: "1" + phone, Device: device, Server: types.HiddenUserServer},
			}},
		}}},
	})
}
