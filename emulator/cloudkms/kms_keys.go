package cloudkms

import (
	"context"
	"crypto"
	"maps"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Limits on destroy_scheduled_duration (the service's documented range
// without an organization policy).
const (
	minDestroyScheduledDuration = 24 * time.Hour
	maxDestroyScheduledDuration = 120 * 24 * time.Hour
)

func (k *kmsService) CreateCryptoKey(ctx context.Context, req *kmspb.CreateCryptoKeyRequest) (*kmspb.CryptoKey, error) {
	if err := parseKeyRingName(req.GetParent()); err != nil {
		return nil, err
	}
	if err := k.s.authorize(ctx, "cloudkms.cryptoKeys.create", req.GetParent()); err != nil {
		return nil, err
	}
	spec, err := k.s.cryptoKeySpec(req)
	if err != nil {
		return nil, err
	}
	name := req.GetParent() + "/cryptoKeys/" + req.GetCryptoKeyId()
	st := k.s.st
	check := func() error {
		if _, ok := st.rings[req.GetParent()]; !ok && !k.s.opts.AutoCreateKeyRings {
			return notFound("KeyRing", req.GetParent())
		}
		if _, ok := st.keys[name]; ok {
			return alreadyExists("CryptoKey", name)
		}
		return nil
	}
	st.mu.Lock()
	err = check()
	st.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var signer crypto.Signer
	if !req.GetSkipInitialVersionCreation() {
		// Generate outside the lock: RSA-4096 takes a while and signing on
		// other keys must not stall meanwhile.
		if signer, err = generateKey(spec.algorithm); err != nil {
			return nil, status.Errorf(codes.Internal, "generate key: %v", err)
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := check(); err != nil {
		return nil, err
	}
	key := k.s.addCryptoKeyLocked(name, spec)
	if signer != nil {
		k.s.addVersionLocked(key, signer, k.s.clock.Now())
	}
	k.s.persistLocked()
	return key.proto(), nil
}

// cryptoKeySpec validates a CreateCryptoKey request and returns the key it
// describes (without name, versions or times).
func (s *Server) cryptoKeySpec(req *kmspb.CreateCryptoKeyRequest) (*cryptoKey, error) {
	if !validID(req.GetCryptoKeyId()) {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid crypto_key_id %q: it must match [a-zA-Z0-9_-]{1,63}.", req.GetCryptoKeyId())
	}
	ck := req.GetCryptoKey()
	if ck == nil {
		return nil, status.Error(codes.InvalidArgument, "The crypto_key field is required.")
	}
	switch ck.GetPurpose() {
	case kmspb.CryptoKey_ASYMMETRIC_SIGN:
	case kmspb.CryptoKey_CRYPTO_KEY_PURPOSE_UNSPECIFIED:
		return nil, status.Error(codes.InvalidArgument, "The crypto_key.purpose field is required.")
	default:
		return nil, status.Errorf(codes.Unimplemented, "The emulator supports only purpose ASYMMETRIC_SIGN, not %v.", ck.GetPurpose())
	}
	tmpl := ck.GetVersionTemplate()
	if _, ok := algorithms[tmpl.GetAlgorithm()]; !ok {
		if tmpl.GetAlgorithm() == kmspb.CryptoKeyVersion_CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED {
			return nil, status.Error(codes.InvalidArgument, "The crypto_key.version_template.algorithm field is required for purpose ASYMMETRIC_SIGN.")
		}
		return nil, status.Errorf(codes.InvalidArgument, "Algorithm %v is not compatible with purpose ASYMMETRIC_SIGN (or not supported by the emulator).", tmpl.GetAlgorithm())
	}
	pl := tmpl.GetProtectionLevel()
	switch pl {
	case kmspb.ProtectionLevel_PROTECTION_LEVEL_UNSPECIFIED:
		pl = kmspb.ProtectionLevel_SOFTWARE
	case kmspb.ProtectionLevel_SOFTWARE, kmspb.ProtectionLevel_HSM:
	default:
		return nil, status.Errorf(codes.Unimplemented, "The emulator supports protection levels SOFTWARE and HSM, not %v.", pl)
	}
	if ck.GetRotationPeriod() != nil || ck.GetNextRotationTime() != nil {
		return nil, status.Error(codes.InvalidArgument, "Automatic rotation (rotation_period, next_rotation_time) is only supported for ENCRYPT_DECRYPT keys.")
	}
	if err := validateLabels(ck.GetLabels()); err != nil {
		return nil, err
	}
	dd := defaultDestroyScheduledDuration
	if d := ck.GetDestroyScheduledDuration(); d != nil {
		dd = d.AsDuration()
		if dd < minDestroyScheduledDuration || dd > maxDestroyScheduledDuration {
			return nil, status.Errorf(codes.InvalidArgument, "destroy_scheduled_duration %v is outside the allowed range [%v, %v].", dd, minDestroyScheduledDuration, maxDestroyScheduledDuration)
		}
	}
	if ck.GetImportOnly() && !req.GetSkipInitialVersionCreation() {
		return nil, status.Error(codes.InvalidArgument, "import_only keys require skip_initial_version_creation.")
	}
	return &cryptoKey{
		purpose:         ck.GetPurpose(),
		algorithm:       tmpl.GetAlgorithm(),
		protection:      pl,
		labels:          maps.Clone(ck.GetLabels()),
		destroyDuration: dd,
		importOnly:      ck.GetImportOnly(),
	}, nil
}

// addCryptoKeyLocked inserts spec under name (creating the key ring if
// AutoCreateKeyRings allowed the request). Callers hold st.mu.
func (s *Server) addCryptoKeyLocked(name string, spec *cryptoKey) *cryptoKey {
	ringName := parentOf(name, "/cryptoKeys/")
	ring, ok := s.st.rings[ringName]
	if !ok {
		ring = s.addKeyRingLocked(ringName)
	}
	spec.name = name
	spec.seq = s.st.nextSeq()
	spec.createTime = s.clock.Now()
	if spec.labels == nil {
		spec.labels = map[string]string{}
	}
	s.st.keys[name] = spec
	ring.keys = append(ring.keys, spec)
	return spec
}

// pendingFor returns how long a new version of key stays PENDING_GENERATION.
func (s *Server) pendingFor(key *cryptoKey) time.Duration {
	if key.protection == kmspb.ProtectionLevel_HSM && s.opts.PendingGenerationHSM > 0 {
		return s.opts.PendingGenerationHSM
	}
	return s.opts.PendingGeneration
}

// addVersionLocked appends a new version with key material signer, created
// at now. Callers hold st.mu.
func (s *Server) addVersionLocked(key *cryptoKey, signer crypto.Signer, now time.Time) *keyVersion {
	n := len(key.versions) + 1
	v := &keyVersion{
		name:       versionName(key.name, n),
		number:     n,
		seq:        s.st.nextSeq(),
		state:      kmspb.CryptoKeyVersion_PENDING_GENERATION,
		algorithm:  key.algorithm,
		protection: key.protection,
		createTime: now,
		readyTime:  now.Add(s.pendingFor(key)),
		signer:     signer,
	}
	v.settle(now)
	key.versions = append(key.versions, v)
	return v
}

// lookupKeyLocked finds a CryptoKey and settles its versions.
func (s *Server) lookupKeyLocked(name string) (*cryptoKey, error) {
	key, ok := s.st.keys[name]
	if !ok {
		return nil, notFound("CryptoKey", name)
	}
	key.settle(s.clock.Now())
	return key, nil
}

func (k *kmsService) GetCryptoKey(ctx context.Context, req *kmspb.GetCryptoKeyRequest) (*kmspb.CryptoKey, error) {
	if _, err := parseCryptoKeyName(req.GetName()); err != nil {
		return nil, err
	}
	if err := k.s.authorize(ctx, "cloudkms.cryptoKeys.get", req.GetName()); err != nil {
		return nil, err
	}
	st := k.s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	key, err := k.s.lookupKeyLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	return key.proto(), nil
}

func (k *kmsService) ListCryptoKeys(ctx context.Context, req *kmspb.ListCryptoKeysRequest) (*kmspb.ListCryptoKeysResponse, error) {
	if err := parseKeyRingName(req.GetParent()); err != nil {
		return nil, err
	}
	if err := k.s.authorize(ctx, "cloudkms.cryptoKeys.list", req.GetParent()); err != nil {
		return nil, err
	}
	f, err := parseFilter(req.GetFilter(), cryptoKeySchema)
	if err != nil {
		return nil, err
	}
	st := k.s.st
	st.mu.Lock()
	ring, ok := st.rings[req.GetParent()]
	if !ok {
		st.mu.Unlock()
		return nil, notFound("KeyRing", req.GetParent())
	}
	now := k.s.clock.Now()
	var items []listItem[*kmspb.CryptoKey]
	for _, key := range ring.keys {
		key.settle(now)
		if f.match(cryptoKeyRecord(key)) {
			items = append(items, listItem[*kmspb.CryptoKey]{name: key.name, seq: key.seq, v: key.proto()})
		}
	}
	st.mu.Unlock()
	out, next, err := page(items, req.GetParent(), req.GetFilter(), req.GetOrderBy(), req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &kmspb.ListCryptoKeysResponse{CryptoKeys: out, NextPageToken: next}
	if req.GetFilter() == "" {
		resp.TotalSize = int32(len(items))
	}
	return resp, nil
}

func (k *kmsService) UpdateCryptoKey(ctx context.Context, req *kmspb.UpdateCryptoKeyRequest) (*kmspb.CryptoKey, error) {
	ck := req.GetCryptoKey()
	if _, err := parseCryptoKeyName(ck.GetName()); err != nil {
		return nil, err
	}
	if err := k.s.authorize(ctx, "cloudkms.cryptoKeys.update", ck.GetName()); err != nil {
		return nil, err
	}
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		return nil, status.Error(codes.InvalidArgument, "The update_mask field is required.")
	}
	for _, p := range paths {
		switch p {
		case "labels":
			if err := validateLabels(ck.GetLabels()); err != nil {
				return nil, err
			}
		case "version_template.algorithm", "version_template":
			if _, ok := algorithms[ck.GetVersionTemplate().GetAlgorithm()]; !ok {
				return nil, status.Errorf(codes.InvalidArgument, "Algorithm %v is not compatible with purpose ASYMMETRIC_SIGN (or not supported by the emulator).", ck.GetVersionTemplate().GetAlgorithm())
			}
		case "version_template.protection_level", "purpose", "destroy_scheduled_duration", "import_only", "crypto_key_backend":
			return nil, status.Errorf(codes.InvalidArgument, "The field %s cannot be updated: it is immutable.", p)
		case "rotation_period", "next_rotation_time":
			return nil, status.Error(codes.InvalidArgument, "Automatic rotation (rotation_period, next_rotation_time) is only supported for ENCRYPT_DECRYPT keys.")
		default:
			return nil, status.Errorf(codes.InvalidArgument, "The update_mask path %q is not valid for a CryptoKey update.", p)
		}
	}
	st := k.s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	key, err := k.s.lookupKeyLocked(ck.GetName())
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		switch p {
		case "labels":
			// The whole map is replaced, as the service does.
			key.labels = maps.Clone(ck.GetLabels())
			if key.labels == nil {
				key.labels = map[string]string{}
			}
		case "version_template.algorithm", "version_template":
			tmpl := ck.GetVersionTemplate()
			if p == "version_template" && tmpl.GetProtectionLevel() != kmspb.ProtectionLevel_PROTECTION_LEVEL_UNSPECIFIED && tmpl.GetProtectionLevel() != key.protection {
				return nil, status.Error(codes.InvalidArgument, "The field version_template.protection_level cannot be updated: it is immutable.")
			}
			key.algorithm = tmpl.GetAlgorithm()
		}
	}
	k.s.persistLocked()
	return key.proto(), nil
}

func (k *kmsService) UpdateCryptoKeyPrimaryVersion(ctx context.Context, req *kmspb.UpdateCryptoKeyPrimaryVersionRequest) (*kmspb.CryptoKey, error) {
	if _, err := parseCryptoKeyName(req.GetName()); err != nil {
		return nil, err
	}
	if err := k.s.authorize(ctx, "cloudkms.cryptoKeys.update", req.GetName()); err != nil {
		return nil, err
	}
	st := k.s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, err := k.s.lookupKeyLocked(req.GetName()); err != nil {
		return nil, err
	}
	return nil, status.Errorf(codes.FailedPrecondition, "CryptoKey %s has purpose ASYMMETRIC_SIGN: only ENCRYPT_DECRYPT keys have a primary version.", req.GetName())
}
