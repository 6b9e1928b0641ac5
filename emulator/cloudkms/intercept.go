package cloudkms

import (
	"context"
	"net/http"
	"path"
	"strings"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// intercept runs in front of every unary call: count and record it,
// authenticate the caller, apply injected faults and quotas, run the method,
// tamper with the answer if a fault says so.
func (s *Server) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := path.Base(info.FullMethod)
	s.counts.inc(method)
	start := time.Now()
	resource := resourceOf(req)
	resp, injected, err := s.handle(ctx, method, resource, req, handler)
	s.sendDate(ctx)
	s.requests.add(Request{Method: method, Resource: resource, Received: start, Code: status.Code(err), Injected: injected})
	s.logf("gcpkms: %s %s -> %v (%v)", method, resource, status.Code(err), time.Since(start).Round(time.Microsecond))
	return resp, err
}

// sendDate sends the emulator clock's time in the answer's "date" header,
// as Google's front ends send an HTTP Date with every answer (failures
// included), so that clients can learn the service's time: a moved
// emulator clock is then seen by them as a cloud clock that differs from
// the host's. An answer whose connection was dropped has no header to
// carry it; the error is ignored.
func (s *Server) sendDate(ctx context.Context) {
	_ = grpc.SetHeader(ctx, metadata.Pairs("date", s.clock.Now().UTC().Format(http.TimeFormat)))
}

// handle runs one call; injected reports that an injected fault answered it
// (its code, or its latency cut short by the caller's deadline).
func (s *Server) handle(ctx context.Context, method, resource string, req any, handler grpc.UnaryHandler) (resp any, injected bool, err error) {
	ctx = context.WithValue(ctx, callerKey{}, s.authenticate(ctx))
	f := s.faults.take(method)
	if f != nil {
		if f.Latency > 0 {
			t := time.NewTimer(f.Latency)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, true, status.FromContextError(ctx.Err()).Err()
			}
		}
		if f.Drop {
			return nil, true, s.drop(ctx)
		}
		if f.Code != codes.OK {
			return nil, true, f.status(resource).Err()
		}
	}
	if _, err := s.caller(ctx); err != nil && s.auth.checking() {
		return nil, false, err
	}
	if err := s.services.check(projectOf(resource)); err != nil {
		return nil, false, err
	}
	overrun, err := s.quotas.check(method, resource, s.clock.Now(), s.isHSM)
	if err != nil {
		return nil, false, err
	}
	if overrun {
		s.counts.inc(QuotaOverrunCount)
	}
	resp, err = handler(ctx, req)
	if err == nil && f != nil && f.Tamper != TamperNone {
		tamper(f.Tamper, resp)
	}
	return resp, false, err
}

// authenticate reads "authorization: Bearer ..." from the call's metadata.
func (s *Server) authenticate(ctx context.Context) callerID {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if tok, ok := strings.CutPrefix(v, "Bearer "); ok {
			email, err := s.auth.authenticate(tok)
			return callerID{email: email, err: err}
		}
	}
	return callerID{}
}

// resourceOf finds the resource a request is about (name, parent, resource,
// or the name of the message being updated), for logs and per-project
// quotas.
func resourceOf(req any) string {
	m, ok := req.(proto.Message)
	if !ok {
		return ""
	}
	r := m.ProtoReflect()
	fields := r.Descriptor().Fields()
	for _, n := range []string{"name", "parent", "resource"} {
		if fd := fields.ByName(protoName(n)); fd != nil && fd.Kind().String() == "string" {
			return r.Get(fd).String()
		}
	}
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.Message() == nil || fd.IsList() || fd.IsMap() || !r.Has(fd) {
			continue
		}
		sub := r.Get(fd).Message()
		if nf := fd.Message().Fields().ByName("name"); nf != nil && nf.Kind().String() == "string" {
			return sub.Get(nf).String()
		}
	}
	return ""
}

func protoName(s string) protoreflect.Name { return protoreflect.Name(s) }

// drop closes the connection the call in ctx came on. The answer it returns
// never reaches the client, whose transport fails the call first.
func (s *Server) drop(ctx context.Context) error {
	if p, ok := peer.FromContext(ctx); ok && s.conns.drop(p.Addr.String()) {
		<-ctx.Done() // the server cancels the call once the connection is gone
		return status.Error(codes.Unavailable, "connection dropped (injected)")
	}
	return status.Error(codes.Unavailable, "connection dropped (injected): the call's connection was not found")
}

// QuotaOverrunCount is the Counts entry of requests over their quota that
// the regional model's soft enforcement served anyway.
const QuotaOverrunCount = "quota_overruns"

// isHSM reports whether resource is, or is a version of, a CryptoKey whose
// protection level is HSM.
func (s *Server) isHSM(resource string) bool {
	key := resource
	if k, _, err := parseVersionName(resource); err == nil {
		key = k
	}
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	k, ok := s.st.keys[key]
	return ok && k.protection == kmspb.ProtectionLevel_HSM
}
