package cloudkms

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// lookupVersionLocked finds a version (and its key) and settles the key's
// versions. Callers hold st.mu.
func (s *Server) lookupVersionLocked(name string) (*cryptoKey, *keyVersion, error) {
	keyName, n, err := parseVersionName(name)
	if err != nil {
		return nil, nil, err
	}
	key, ok := s.st.keys[keyName]
	if !ok || n > len(key.versions) {
		return nil, nil, notFound("CryptoKeyVersion", name)
	}
	key.settle(s.clock.Now())
	return key, key.versions[n-1], nil
}

// notEnabled is the FAILED_PRECONDITION the service returns when a version
// that is not ENABLED is used, with a PreconditionFailure detail of one
// violation: its type names the state (KEY_PENDING_GENERATION is the one
// clients match on), its subject is the version's name, and, as in the
// service's recorded answers, it has no description.
func notEnabled(v *keyVersion) error {
	msg := fmt.Sprintf("%s is not enabled, current state is: %s.", v.name, v.state)
	st := status.New(codes.FailedPrecondition, msg)
	if d, err := st.WithDetails(&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{{
		Type: "KEY_" + v.state.String(), Subject: v.name,
	}}}); err == nil {
		st = d
	}
	return st.Err()
}

// wrongState is the FAILED_PRECONDITION for a state transition the version's
// current state does not allow.
func wrongState(v *keyVersion) error {
	return status.Errorf(codes.FailedPrecondition, "The request cannot be fulfilled. Resource %s has value %s in field crypto_key_version.state.", v.name, v.state)
}

func (k *kmsService) GetCryptoKeyVersion(ctx context.Context, req *kmspb.GetCryptoKeyVersionRequest) (*kmspb.CryptoKeyVersion, error) {
	if _, _, err := parseVersionName(req.GetName()); err != nil {
		return nil, err
	}
	if err := k.s.authorize(ctx, "cloudkms.cryptoKeyVersions.get", req.GetName()); err != nil {
		return nil, err
	}
	st := k.s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	_, v, err := k.s.lookupVersionLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	return v.proto(), nil
}

func (k *kmsService) ListCryptoKeyVersions(ctx context.Context, req *kmspb.ListCryptoKeyVersionsRequest) (*kmspb.ListCryptoKeyVersionsResponse, error) {
	if _, err := parseCryptoKeyName(req.GetParent()); err != nil {
		return nil, err
	}
	if err := k.s.authorize(ctx, "cloudkms.cryptoKeyVersions.list", req.GetParent()); err != nil {
		return nil, err
	}
	f, err := parseFilter(req.GetFilter(), versionSchema)
	if err != nil {
		return nil, err
	}
	st := k.s.st
	st.mu.Lock()
	key, err := k.s.lookupKeyLocked(req.GetParent())
	if err != nil {
		st.mu.Unlock()
		return nil, err
	}
	var items []listItem[*kmspb.CryptoKeyVersion]
	for _, v := range key.versions {
		if f.match(versionRecord(v)) {
			items = append(items, listItem[*kmspb.CryptoKeyVersion]{name: v.name, seq: v.seq, v: v.proto()})
		}
	}
	st.mu.Unlock()
	out, next, err := page(items, req.GetParent(), req.GetFilter(), req.GetOrderBy(), req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &kmspb.ListCryptoKeyVersionsResponse{CryptoKeyVersions: out, NextPageToken: next}
	if req.GetFilter() == "" {
		resp.TotalSize = int32(len(items))
	}
	return resp, nil
}

func (k *kmsService) CreateCryptoKeyVersion(ctx context.Context, req *kmspb.CreateCryptoKeyVersionRequest) (*kmspb.CryptoKeyVersion, error) {
	if _, err := parseCryptoKeyName(req.GetParent()); err != nil {
		return nil, err
	}
	if err := k.s.authorize(ctx, "cloudkms.cryptoKeyVersions.create", req.GetParent()); err != nil {
		return nil, err
	}
	st := k.s.st
	st.mu.Lock()
	key, err := k.s.lookupKeyLocked(req.GetParent())
	if err == nil && key.importOnly {
		err = status.Errorf(codes.FailedPrecondition, "CryptoKey %s is import_only: new versions must be imported.", key.name)
	}
	var alg kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm
	if err == nil {
		alg = key.algorithm
	}
	st.mu.Unlock()
	if err != nil {
		return nil, err
	}
	signer, err := generateKey(alg)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "generate key: %v", err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	v := k.s.addVersionLocked(key, signer, k.s.clock.Now())
	if v.algorithm != alg { // the template changed while the key was generated
		v.algorithm = alg
	}
	k.s.persistLocked()
	return v.proto(), nil
}

func (k *kmsService) UpdateCryptoKeyVersion(ctx context.Context, req *kmspb.UpdateCryptoKeyVersionRequest) (*kmspb.CryptoKeyVersion, error) {
	in := req.GetCryptoKeyVersion()
	if _, _, err := parseVersionName(in.GetName()); err != nil {
		return nil, err
	}
	if err := k.s.authorize(ctx, "cloudkms.cryptoKeyVersions.update", in.GetName()); err != nil {
		return nil, err
	}
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		return nil, status.Error(codes.InvalidArgument, "The update_mask field is required.")
	}
	for _, p := range paths {
		if p != "state" {
			return nil, status.Errorf(codes.InvalidArgument, "The update_mask path %q is not valid for a CryptoKeyVersion update (the emulator supports \"state\").", p)
		}
	}
	target := in.GetState()
	if target != kmspb.CryptoKeyVersion_ENABLED && target != kmspb.CryptoKeyVersion_DISABLED {
		return nil, status.Errorf(codes.InvalidArgument, "A CryptoKeyVersion can only be updated to state ENABLED or DISABLED, not %v.", target)
	}
	st := k.s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	_, v, err := k.s.lookupVersionLocked(in.GetName())
	if err != nil {
		return nil, err
	}
	if v.state != kmspb.CryptoKeyVersion_ENABLED && v.state != kmspb.CryptoKeyVersion_DISABLED {
		return nil, wrongState(v)
	}
	v.state = target
	k.s.persistLocked()
	return v.proto(), nil
}

func (k *kmsService) DestroyCryptoKeyVersion(ctx context.Context, req *kmspb.DestroyCryptoKeyVersionRequest) (*kmspb.CryptoKeyVersion, error) {
	if _, _, err := parseVersionName(req.GetName()); err != nil {
		return nil, err
	}
	if err := k.s.authorize(ctx, "cloudkms.cryptoKeyVersions.destroy", req.GetName()); err != nil {
		return nil, err
	}
	st := k.s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	key, v, err := k.s.lookupVersionLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	if v.state != kmspb.CryptoKeyVersion_ENABLED && v.state != kmspb.CryptoKeyVersion_DISABLED {
		return nil, wrongState(v)
	}
	v.state = kmspb.CryptoKeyVersion_DESTROY_SCHEDULED
	v.destroyTime = k.s.clock.Now().Add(key.destroyDuration)
	k.s.persistLocked()
	return v.proto(), nil
}

func (k *kmsService) RestoreCryptoKeyVersion(ctx context.Context, req *kmspb.RestoreCryptoKeyVersionRequest) (*kmspb.CryptoKeyVersion, error) {
	if _, _, err := parseVersionName(req.GetName()); err != nil {
		return nil, err
	}
	if err := k.s.authorize(ctx, "cloudkms.cryptoKeyVersions.restore", req.GetName()); err != nil {
		return nil, err
	}
	st := k.s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	_, v, err := k.s.lookupVersionLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	if v.state != kmspb.CryptoKeyVersion_DESTROY_SCHEDULED {
		return nil, wrongState(v)
	}
	// Restored versions come back DISABLED, as the service documents.
	v.state = kmspb.CryptoKeyVersion_DISABLED
	v.destroyTime = time.Time{}
	k.s.persistLocked()
	return v.proto(), nil
}
