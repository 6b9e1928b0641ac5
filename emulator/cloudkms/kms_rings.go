package cloudkms

import (
	"context"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// kmsService implements google.cloud.kms.v1.KeyManagementService over the
// server's store. Methods the emulator does not implement (import jobs,
// Encrypt/Decrypt, MAC, ...) answer Unimplemented.
type kmsService struct {
	kmspb.UnimplementedKeyManagementServiceServer
	s *Server
}

func notFound(kind, name string) error {
	return status.Errorf(codes.NotFound, "%s %s not found.", kind, name)
}

func alreadyExists(kind, name string) error {
	return status.Errorf(codes.AlreadyExists, "%s %s already exists.", kind, name)
}

func (k *kmsService) CreateKeyRing(ctx context.Context, req *kmspb.CreateKeyRingRequest) (*kmspb.KeyRing, error) {
	if _, _, err := parseLocation(req.GetParent()); err != nil {
		return nil, err
	}
	if err := k.s.authorize(ctx, "cloudkms.keyRings.create", req.GetParent()); err != nil {
		return nil, err
	}
	if !validID(req.GetKeyRingId()) {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid key_ring_id %q: it must match [a-zA-Z0-9_-]{1,63}.", req.GetKeyRingId())
	}
	name := req.GetParent() + "/keyRings/" + req.GetKeyRingId()
	st := k.s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.rings[name]; ok {
		return nil, alreadyExists("KeyRing", name)
	}
	r := k.s.addKeyRingLocked(name)
	k.s.persistLocked()
	return r.proto(), nil
}

// addKeyRingLocked creates the key ring name (already validated). Callers
// hold st.mu.
func (s *Server) addKeyRingLocked(name string) *keyRing {
	r := &keyRing{name: name, seq: s.st.nextSeq(), createTime: s.clock.Now()}
	s.st.rings[name] = r
	return r
}

func (k *kmsService) GetKeyRing(ctx context.Context, req *kmspb.GetKeyRingRequest) (*kmspb.KeyRing, error) {
	if err := parseKeyRingName(req.GetName()); err != nil {
		return nil, err
	}
	if err := k.s.authorize(ctx, "cloudkms.keyRings.get", req.GetName()); err != nil {
		return nil, err
	}
	st := k.s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	r, ok := st.rings[req.GetName()]
	if !ok {
		return nil, notFound("KeyRing", req.GetName())
	}
	return r.proto(), nil
}

func (k *kmsService) ListKeyRings(ctx context.Context, req *kmspb.ListKeyRingsRequest) (*kmspb.ListKeyRingsResponse, error) {
	if _, _, err := parseLocation(req.GetParent()); err != nil {
		return nil, err
	}
	if err := k.s.authorize(ctx, "cloudkms.keyRings.list", req.GetParent()); err != nil {
		return nil, err
	}
	f, err := parseFilter(req.GetFilter(), keyRingSchema)
	if err != nil {
		return nil, err
	}
	st := k.s.st
	st.mu.Lock()
	var items []listItem[*kmspb.KeyRing]
	for _, r := range st.rings {
		if parentOf(r.name, "/keyRings/") == req.GetParent() && f.match(keyRingRecord(r)) {
			items = append(items, listItem[*kmspb.KeyRing]{name: r.name, seq: r.seq, v: r.proto()})
		}
	}
	st.mu.Unlock()
	sortBySeq(items)
	out, next, err := page(items, req.GetParent(), req.GetFilter(), req.GetOrderBy(), req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &kmspb.ListKeyRingsResponse{KeyRings: out, NextPageToken: next}
	if req.GetFilter() == "" {
		resp.TotalSize = int32(len(items))
	}
	return resp, nil
}
