package rtcp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"rtcp/internal/plan5link"
	"rtcp/protocol/plan5"
)

// A Credential is a key a peer proves it holds to a DP that asks for one:
// the key's name, which the DP knows it by, and its secret, which both
// sides hold and which never crosses the wire. See Policy.
type Credential struct {
	Key    string
	Secret []byte
}

// MinSecretLen is the shortest secret a Policy accepts. Use 32 random
// bytes (openssl rand -hex 32).
const MinSecretLen = 16

// ParseCredential parses a token of the form "KEY:SECRET", the form the
// rtcp command reads from -token-file or RTCP_TOKEN. Surrounding white
// space (a file's final newline) is ignored.
func ParseCredential(token string) (*Credential, error) {
	token = strings.TrimSpace(token)
	key, secret, ok := strings.Cut(token, ":")
	if !ok || key == "" || secret == "" {
		return nil, errors.New("rtcp: a token is KEY:SECRET, the key's name and its secret")
	}
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("rtcp: the secret of key %q is %d bytes; use at least %d random bytes (openssl rand -hex 32)", key, len(secret), MinSecretLen)
	}
	return &Credential{Key: key, Secret: []byte(secret)}, nil
}

// A Policy says who may use a DiscoverPoint: which peers it admits, who may
// register which names, and which clients may reach them. A DP without a
// Policy admits everyone, as the seed protocol does.
//
// A peer is admitted with a key: it names one of Keys in its Aloha and
// proves it holds the secret by answering the DP's fresh random challenge
// with an HMAC (protocol/plan5/SPEC.md, "Authentication"); the secret is
// never sent. A peer that names no key is anonymous, and is admitted only
// if AnonymousServers or AnonymousClients says so; a plain Plan5 peer is
// always anonymous.
//
// The rules of Names are checked when a server registers, and again on
// every session open (each Connect, each port-mode connection), so that a
// policy changed with SetPolicy takes effect at once. Links that the
// program adds itself with AddLink (the other wires) are not asked for a
// key or checked against Owners; the clients of their names are checked
// like any other.
type Policy struct {
	// Keys maps each key's name to its secret (at least MinSecretLen
	// bytes). A key name may not contain ':'.
	Keys map[string][]byte

	// AnonymousServers admits servers that present no key; they may
	// register names that no rule gives to Owners.
	AnonymousServers bool

	// AnonymousClients admits indirect clients that present no key; they
	// may reach names whose rule lists no Clients. Port-mode connections
	// (ServePort, Relay) are never asked for a key, so they are anonymous
	// clients whatever this says: protect their names with Clients (which
	// refuses them) or Allow.
	AnonymousClients bool

	// Names are the rules for names, tried in order; the first whose
	// pattern matches a name applies to it. A name no rule matches may be
	// registered by any admitted server (the first one holds it) and
	// reached by any client.
	Names []NameRule

	// DPs are the keys of the DPs of this DP's cluster (the Credential of
	// their Peer dialers). A DP that proves one of them and carries a
	// session here speaks for the session's client: the session is
	// checked against Names as that client (the key it proved to that
	// DP, the address it came from), which the carrying DP's proof
	// covers, and the server is told that client. A session carried by a
	// DP of any other key is checked as that DP. Give these keys to DPs
	// only: whoever holds one can speak for any client.
	DPs []string

	// KeyLimits bound the sessions of the clients that prove each key,
	// to any names together, at this DP (limits_rate.go). A session
	// under both a name's Limits and its client's key's obeys both.
	KeyLimits map[string]Limits
}

// A NameRule binds a name, or a pattern of names, to its owners, its
// clients and the networks its clients may come from.
type NameRule struct {
	// Name is a name or a pattern in the syntax of path.Match ("printer-*",
	// "site-[0-9]*", "cccp:*"), except that '*' and '?' also match '/'.
	// Validate refuses one that can match no ValidDoorName ("Printer-*").
	Name string

	// Owners are the keys that may register a matching name. Empty: any
	// admitted server. When set, a server of another key (or none) is
	// refused, and the owner takes the name back from a server that
	// holds it but may no longer (after SetPolicy).
	Owners []string

	// Clients are the keys that may open sessions to a matching name.
	// Empty: any admitted client and any port-mode connection.
	Clients []string

	// Allow are the networks clients may connect from, for indirect
	// clients and port-mode connections alike. Empty: anywhere. A client
	// refused here never reaches the server.
	Allow []netip.Prefix

	// Limits bound each matching name's sessions at this DP: each name
	// has its own (a pattern's names do not share them).
	Limits Limits
}

// Validate reports the first mistake in p: a short secret, a bad pattern
// (or one that can match no name: an error matching ErrBadName), a rule
// that names a key that is not in Keys, an invalid prefix.
func (p *Policy) Validate() error {
	for k, s := range p.Keys {
		if k == "" || strings.Contains(k, ":") {
			return fmt.Errorf("rtcp: policy: key name %q must be non-empty and contain no ':'", k)
		}
		if len(s) < MinSecretLen {
			return fmt.Errorf("rtcp: policy: the secret of key %q is %d bytes; use at least %d random bytes (openssl rand -hex 32)", k, len(s), MinSecretLen)
		}
	}
	for _, k := range p.DPs {
		if _, ok := p.Keys[k]; !ok {
			return fmt.Errorf("rtcp: policy: DPs names key %q, which is not in Keys", k)
		}
	}
	for k, l := range p.KeyLimits {
		if _, ok := p.Keys[k]; !ok {
			return fmt.Errorf("rtcp: policy: KeyLimits names key %q, which is not in Keys", k)
		}
		if err := l.validate(); err != nil {
			return fmt.Errorf("rtcp: policy: the limits of key %q: %v", k, err)
		}
	}
	for i, r := range p.Names {
		if err := r.Limits.validate(); err != nil {
			return fmt.Errorf("rtcp: policy: rule %q: limits: %v", r.Name, err)
		}
		if r.Name == "" {
			return fmt.Errorf("rtcp: policy: rule %d has no name or pattern", i+1)
		}
		if _, err := matchName(r.Name, ""); err != nil {
			return fmt.Errorf("rtcp: policy: rule %q: bad pattern: %v", r.Name, err)
		}
		if err := checkPattern(r.Name); err != nil {
			return err
		}
		for _, k := range append(slices.Clip(r.Owners), r.Clients...) {
			if _, ok := p.Keys[k]; !ok {
				return fmt.Errorf("rtcp: policy: rule %q names key %q, which is not in Keys", r.Name, k)
			}
		}
		for _, a := range r.Allow {
			if !a.IsValid() {
				return fmt.Errorf("rtcp: policy: rule %q has an invalid network in Allow", r.Name)
			}
		}
	}
	return nil
}

// matchName is path.Match with '/' as an ordinary character.
func matchName(pattern, name string) (bool, error) {
	const sep = "\x00"
	return path.Match(strings.ReplaceAll(pattern, "/", sep), strings.ReplaceAll(name, "/", sep))
}

// rule returns the first rule for name, or nil.
func (p *Policy) rule(name string) *NameRule {
	for i := range p.Names {
		if ok, _ := matchName(p.Names[i].Name, name); ok {
			return &p.Names[i]
		}
	}
	return nil
}

// unauthorizedPrefix starts every refusal for want of authorization, so
// that a RefusedError matches ErrUnauthorized.
const unauthorizedPrefix = "rtcp: unauthorized: "

// errKeyRequiredReason is the DP's refusal of a peer that gave no key
// where it admits none without; a RefusedError with it matches
// ErrKeyRequired.
const errKeyRequiredReason = unauthorizedPrefix + "this DP admits only peers with a key, and this one gave none: give it a key the DP's operator issued"

// unauthorized is a refusal for want of authorization.
func unauthorized(format string, args ...any) error {
	return &authError{unauthorizedPrefix + fmt.Sprintf(format, args...)}
}

type authError struct{ reason string }

func (e *authError) Error() string        { return e.reason }
func (e *authError) Is(target error) bool { return target == ErrUnauthorized }

// Is makes errors.Is(err, ErrRefused) true, errors.Is(err,
// ErrUnauthorized) for a refusal that says the peer lacks a key, a valid
// proof or the right to a name (and ErrKeyRequired too, when the peer
// gave no key to a DP that admits none without), and errors.Is(err,
// ErrBadName) for one of a name that is not one.
func (e *RefusedError) Is(target error) bool {
	return target == ErrRefused || target == ErrUnauthorized && strings.HasPrefix(e.Reason, unauthorizedPrefix) ||
		target == ErrBadName && strings.HasPrefix(e.Reason, badNamePrefix) ||
		target == ErrKeyRequired && e.Reason == errKeyRequiredReason
}

// principal is who a peer proved to be: the name of its key, or "" for an
// anonymous peer. For a session that another DP of the cluster carried
// here, it is the client that DP vouched for: its key, and the address
// it came from; by is then the key of that DP.
type principal struct {
	key  string
	addr string // "": the address of the peer's own connection
	by   string
	// secret is the secret the peer proved (by's, when carried), or
	// empty when it proved none here: a policy that gives the key
	// another secret disowns it (SetPolicy, reauth.go).
	secret string
}

func (p principal) String() string {
	s := "anonymous"
	if p.key != "" {
		s = "key " + strconv.Quote(p.key)
	}
	if p.by != "" {
		s += " at " + p.addr + ", carried by the DP of key " + strconv.Quote(p.by)
	}
	return s
}

// clientAddr is the address a client's rules are checked against and its
// server is told: the one a DP of the cluster vouched for, else that of
// the client's connection c.
func (p principal) clientAddr(c net.Conn) net.Addr {
	if p.addr == "" {
		return c.RemoteAddr()
	}
	if ap, err := netip.ParseAddrPort(p.addr); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return carriedAddr(p.addr) // not an IP: no Allow rule matches it
}

// vouchedAddr reports whether p is a client that a DP of the cluster
// carries here and whose address that DP vouched for with the cluster's
// key (ClientAddr), an IP address and port: the address to broker a
// direct path to. A peer that proved no such key cannot claim one.
func (p principal) vouchedAddr() bool {
	if p.by == "" {
		return false
	}
	_, err := netip.ParseAddrPort(p.addr)
	return err == nil
}

// carriedAddr is a client address that another DP vouched for and that
// is not host:port of an IP address.
type carriedAddr string

func (a carriedAddr) Network() string { return "rtcp" }
func (a carriedAddr) String() string  { return string(a) }

// clientName is the name a server is told for a client that called
// itself given: the name of its key when it proved one, so that a client
// cannot pose to the server as the holder of another key.
func (p principal) clientName(given string) string {
	if p.key != "" {
		return p.key
	}
	return given
}

// authState is the DP's live policy. What it knows of each link's
// principal, for the checks at every session open, is in the link table.
type authState struct {
	policy   atomic.Pointer[Policy]
	set      atomic.Bool    // SetPolicy was called: it wins over the field
	sessions clientSessions // the client sessions open, for SetPolicy (reauth.go)
}

// SetPolicy replaces the DP's Policy while it runs; nil admits everyone.
// It applies at once to what is open: the links of servers it no longer
// allows to hold their names are closed (their sessions end, and the
// names are free), and so are the sessions of clients it no longer
// allows (a revoked key, a key given a new secret, a name's Clients or
// Allow that leave them out), each logged with the reason. Links and sessions it still allows go on
// untouched. Servers and clients are checked against it from their next
// registration or session. It returns p's Validate error, and then
// changes nothing.
func (dp *DiscoverPoint) SetPolicy(p *Policy) error {
	if p != nil {
		if err := p.Validate(); err != nil {
			return err
		}
	}
	dp.auth.set.Store(true)
	dp.auth.policy.Store(p)
	dp.limits.update(p)
	dp.enforcePolicy()
	return nil
}

// policy returns the policy in force.
func (dp *DiscoverPoint) policy() *Policy {
	if dp.auth.set.Load() {
		return dp.auth.policy.Load()
	}
	return dp.Policy
}

// checkPolicy validates the Policy field before the DP serves.
func (dp *DiscoverPoint) checkPolicy() error {
	if p := dp.policy(); p != nil {
		return p.Validate()
	}
	return nil
}

// challengeLen is the size of the DP's random challenge.
const challengeLen = 32

// bindingTLS is the Binding that ties a proof to the TLS connection.
const bindingTLS = "tls-exporter"

// admit runs the authentication exchange with a peer whose Aloha a asked
// for it, or decides that an anonymous peer may go on. On refusal it has
// told the peer why, and returns false.
func (dp *DiscoverPoint) admit(c net.Conn, r *plan5.Reader, a *plan5.Aloha) (principal, bool) {
	pol := dp.policy()
	if pol == nil {
		return principal{}, true // a.Key is ignored, as an older DP would
	}
	if a.Key == "" {
		if a.R == plan5.RoleIS && pol.AnonymousServers || a.R == plan5.RoleIC && pol.AnonymousClients {
			return principal{}, true
		}
		dp.log().Info("rtcp: peer refused: no key", "remote", c.RemoteAddr(), "role", a.R, "name", a.N)
		dp.refuse(c, errKeyRequiredReason)
		return principal{}, false
	}
	ch := &plan5.Aloha{V: plan5.Version, R: plan5.RoleDP, N: dp.Name, Challenge: make([]byte, challengeLen)}
	rand.Read(ch.Challenge)
	binding := tlsBinding(c)
	if binding != nil {
		ch.Binding = bindingTLS
	}
	if err := plan5link.WriteMessage(c, ch, 0); err != nil {
		return principal{}, false
	}
	m, err := r.ReadMessage()
	var proof []byte
	if err == nil {
		if pa, ok := m.(*plan5.Aloha); ok {
			proof = pa.Proof
		} else {
			err = fmt.Errorf("got %v, want an Aloha with Proof", m.Type())
		}
	}
	if err != nil {
		dp.log().Info("rtcp: peer refused: no answer to the challenge", "remote", c.RemoteAddr(), "key", a.Key, "err", err)
		dp.refuse(c, unauthorizedPrefix+"no answer to the authentication challenge: "+err.Error())
		return principal{}, false
	}
	secret, known := pol.Keys[a.Key]
	if !known {
		// Spend the same work on an unknown key as on a known one.
		secret = make([]byte, sha256.Size)
	}
	want := authProof(secret, ch.Challenge, a, binding)
	if !hmac.Equal(want, proof) || !known {
		dp.log().Info("rtcp: peer refused: authentication failed", "remote", c.RemoteAddr(), "key", a.Key, "role", a.R, "name", a.N)
		dp.refuse(c, unauthorizedPrefix+fmt.Sprintf("authentication with key %q failed: the DP does not know the key or the secret is wrong", a.Key))
		return principal{}, false
	}
	if a.To != "" && a.To != dp.Advertise {
		// A proof for another DP, relayed here by the one it was given
		// to (a name pointed at it in a cluster's registry, say).
		dp.log().Warn("rtcp: peer refused: its proof is meant for another DP", "remote", c.RemoteAddr(), "key", a.Key, "to", a.To, "advertise", dp.Advertise)
		dp.refuse(c, unauthorizedPrefix+fmt.Sprintf("the proof of key %q is meant for the DP at %q, and this DP advertises %q", a.Key, a.To, dp.Advertise))
		return principal{}, false
	}
	if a.R == plan5.RoleIC && a.Via != "" && a.To != "" && a.Transport == wireRaw && slices.Contains(pol.DPs, a.Key) {
		// A DP of the cluster carries a session: the client it speaks
		// for is the one its proof names.
		return principal{key: a.ClientKey, addr: a.ClientAddr, by: a.Key, secret: string(secret)}, true
	}
	return principal{key: a.Key, secret: string(secret)}, true
}

// authProof is the HMAC-SHA256, under secret, of the challenge and of what
// the peer's first Aloha asks for (SPEC.md, "Authentication"). The Aloha
// keys that bind a proof further (To, ClientKey, ClientAddr) are covered
// when any is set, so that a proof without them is what it always was.
func authProof(secret, challenge []byte, a *plan5.Aloha, binding []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("rtcp-auth-v1"))
	fields := [][]byte{challenge, []byte(strconv.Itoa(int(a.R))), []byte(a.N), []byte(a.Key), []byte(a.Owner), binding}
	if a.To != "" || a.ClientKey != "" || a.ClientAddr != "" {
		fields = append(fields, []byte(a.To), []byte(a.ClientKey), []byte(a.ClientAddr))
	}
	for _, f := range fields {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		m.Write(n[:])
		m.Write(f)
	}
	return m.Sum(nil)
}

// answerChallenge is the peer's side: given the DP's challenge Aloha,
// send the proof of cred. ours is the Aloha this side sent first.
func answerChallenge(c net.Conn, ours, ch *plan5.Aloha, cred *Credential) error {
	if cred == nil || ours.Key == "" {
		return errors.New("rtcp: the DP sent an authentication challenge to a peer that gave no key")
	}
	binding := tlsBinding(c)
	switch ch.Binding {
	case "":
		if binding != nil {
			// A DP on TLS always binds: a challenge without it comes from
			// whoever ended our TLS, to relay our proof to the DP over
			// another connection.
			return errors.New("rtcp: the DP did not bind authentication to this TLS connection, as a DP on TLS does: something between this side and the DP ends TLS and could reuse the proof; refusing to send it")
		}
	case bindingTLS:
		if binding == nil {
			return errors.New("rtcp: the DP binds authentication to TLS, but this connection to it is not TLS: connect to it with TLS")
		}
	default:
		return fmt.Errorf("rtcp: the DP asks for authentication binding %q, which this side does not know", ch.Binding)
	}
	proof := &plan5.Aloha{V: ours.V, R: ours.R, N: ours.N, Proof: authProof(cred.Secret, ch.Challenge, ours, binding)}
	return plan5link.WriteMessage(c, proof, 0)
}

// authorizeServer checks that who may hold the name.
func (pol *Policy) authorizeServer(who principal, name string) error {
	if pol == nil {
		return nil
	}
	if who.key == "" {
		if !pol.AnonymousServers {
			return unauthorized("this DP registers only servers with a key")
		}
	} else if _, ok := pol.Keys[who.key]; !ok {
		return unauthorized("key %q is no longer accepted by this DP", who.key)
	}
	if err := pol.checkSecret(who); err != nil {
		return err
	}
	if rule := pol.rule(name); rule != nil && len(rule.Owners) > 0 && !slices.Contains(rule.Owners, who.key) {
		return unauthorized("name %q belongs to another key; register a name your key owns", name)
	}
	return nil
}

// authorizeClient checks that who, connecting from addr, may open a
// session to the server name.
func (pol *Policy) authorizeClient(who principal, name string, addr net.Addr) error {
	if pol == nil {
		return nil
	}
	if who.key != "" {
		if _, ok := pol.Keys[who.key]; !ok {
			return unauthorized("key %q is no longer accepted by this DP", who.key)
		}
	}
	if who.by != "" && !slices.Contains(pol.DPs, who.by) {
		return unauthorized("key %q, which carried this client here, is no longer one of this DP's cluster", who.by)
	}
	if err := pol.checkSecret(who); err != nil {
		return err
	}
	rule := pol.rule(name)
	if rule == nil {
		return nil
	}
	if len(rule.Clients) > 0 && !slices.Contains(rule.Clients, who.key) {
		if who.key == "" {
			return unauthorized("server %q takes only clients with a key", name)
		}
		return unauthorized("key %q may not open sessions to server %q", who.key, name)
	}
	if len(rule.Allow) > 0 {
		ip, ok := addrIP(addr)
		if !ok || !slices.ContainsFunc(rule.Allow, func(p netip.Prefix) bool { return p.Contains(ip) }) {
			return unauthorized("clients from %v may not reach server %q", addr, name)
		}
	}
	return nil
}

// addrIP returns the IP address of a network address.
func addrIP(a net.Addr) (netip.Addr, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return ip.Unmap(), ok
	case nil:
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// registryOwner is the owner a server is registered under. A server with
// a key is known by its key: every process that proves it is the same
// owner, so a server that restarts takes its name back at once instead of
// waiting for its old links to time out. An anonymous server is known by
// the Owner of its Aloha, kept apart from keys.
func registryOwner(who principal, owner string) string {
	if who.key != "" {
		return "key:" + who.key
	}
	if strings.HasPrefix(owner, "key:") {
		return "anon:" + owner
	}
	return owner
}

// linkAllowed reports whether the link e may still serve its name; a
// link the policy no longer allows is closed. Links added with AddLink
// are the program's own and always allowed.
func (dp *DiscoverPoint) linkAllowed(e *linkEntry) bool {
	if !e.policed {
		return true
	}
	err := dp.policy().authorizeServer(e.who, e.reg.Name)
	if err == nil {
		return true
	}
	dp.log().Warn("rtcp: closing a server link the policy no longer allows", "name", e.reg.Name, "who", e.who, "reason", err)
	// Closing waits for the peer (mux's CloseTimeout): not here, where a
	// SetPolicy or an open is waiting, and one link after another.
	if !dp.g.Go(func() { e.end() }) {
		e.end()
	}
	return false
}

// evictSquatter frees name for its owner when the server that holds it at
// this DP may no longer hold it. It reports whether it freed the name.
func (dp *DiscoverPoint) evictSquatter(name string) bool {
	owner, es := dp.links.rotation(name)
	if len(es) == 0 {
		return false
	}
	for _, e := range es {
		if !e.policed || dp.linkAllowed(e) {
			return false
		}
	}
	dp.links.forget(name, owner)
	dp.unregister(Registration{Name: name, Owner: owner, DP: dp.Advertise})
	return true
}

// errNotAllowed fails an open on a link that linkAllowed has just closed,
// so that openSession tries the name's other links.
var errNotAllowed = errors.New("rtcp: the server's link is no longer allowed to serve its name")
