package cloudkms

import (
	"net"
	"sync"
)

// connListener tracks the connections it accepts by their remote address,
// so that a Fault with Drop can close the connection a call came on: the
// client then sees its stream break, as when a load balancer or the network
// drops a connection, not a status the server chose.
type connListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[string]net.Conn
}

func newConnListener(l net.Listener) *connListener {
	return &connListener{Listener: l, conns: make(map[string]net.Conn)}
}

// Accept implements net.Listener.
func (l *connListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[c.RemoteAddr().String()] = tc
	l.mu.Unlock()
	return tc, nil
}

// drop closes the connection from remote; it reports whether there was one.
func (l *connListener) drop(remote string) bool {
	l.mu.Lock()
	c := l.conns[remote]
	l.mu.Unlock()
	if c == nil {
		return false
	}
	c.Close()
	return true
}

type trackedConn struct {
	net.Conn
	l    *connListener
	once sync.Once
}

// Close implements net.Conn and forgets the connection.
func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.conns[c.RemoteAddr().String()] == c {
			delete(c.l.conns, c.RemoteAddr().String())
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
