package gcpkms

import (
	"context"

	"cloud.google.com/go/iam/apiv1/iampb"
	kms "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/googleapis/gax-go/v2"
)

// cloudClient is the part of the Cloud KMS API the backend calls: the
// seam between the backend's decisions (what to call, how to read an
// error, when to retry) and the wire. In production it is the official
// client (kmsClient); the backend's tests of error mapping and retries put
// a scripted fake behind it, which honours the gax call options as the
// generated client does, so that no emulator is needed to check them.
type cloudClient interface {
	GetCryptoKey(context.Context, *kmspb.GetCryptoKeyRequest, ...gax.CallOption) (*kmspb.CryptoKey, error)
	CreateCryptoKey(context.Context, *kmspb.CreateCryptoKeyRequest, ...gax.CallOption) (*kmspb.CryptoKey, error)
	UpdateCryptoKey(context.Context, *kmspb.UpdateCryptoKeyRequest, ...gax.CallOption) (*kmspb.CryptoKey, error)
	ListCryptoKeys(context.Context, *kmspb.ListCryptoKeysRequest, ...gax.CallOption) keyIterator
	GetCryptoKeyVersion(context.Context, *kmspb.GetCryptoKeyVersionRequest, ...gax.CallOption) (*kmspb.CryptoKeyVersion, error)
	CreateCryptoKeyVersion(context.Context, *kmspb.CreateCryptoKeyVersionRequest, ...gax.CallOption) (*kmspb.CryptoKeyVersion, error)
	DestroyCryptoKeyVersion(context.Context, *kmspb.DestroyCryptoKeyVersionRequest, ...gax.CallOption) (*kmspb.CryptoKeyVersion, error)
	ListCryptoKeyVersions(context.Context, *kmspb.ListCryptoKeyVersionsRequest, ...gax.CallOption) versionIterator
	GetPublicKey(context.Context, *kmspb.GetPublicKeyRequest, ...gax.CallOption) (*kmspb.PublicKey, error)
	AsymmetricSign(context.Context, *kmspb.AsymmetricSignRequest, ...gax.CallOption) (*kmspb.AsymmetricSignResponse, error)
	SetIamPolicy(context.Context, *iampb.SetIamPolicyRequest, ...gax.CallOption) (*iampb.Policy, error)
	Close() error
}

// keyIterator and versionIterator are what the backend uses of the
// client's list iterators: Next until iterator.Done. (The client's
// iterator types cannot be built outside its package, so the seam names
// the one method.)
type (
	keyIterator interface {
		Next() (*kmspb.CryptoKey, error)
	}
	versionIterator interface {
		Next() (*kmspb.CryptoKeyVersion, error)
	}
)

// kmsClient is the official client behind the seam. Only the listings
// need adapting, to return the iterators as the interfaces above.
type kmsClient struct{ *kms.KeyManagementClient }

// ListCryptoKeys implements cloudClient.
func (c kmsClient) ListCryptoKeys(ctx context.Context, req *kmspb.ListCryptoKeysRequest, opts ...gax.CallOption) keyIterator {
	return c.KeyManagementClient.ListCryptoKeys(ctx, req, opts...)
}

// ListCryptoKeyVersions implements cloudClient.
func (c kmsClient) ListCryptoKeyVersions(ctx context.Context, req *kmspb.ListCryptoKeyVersionsRequest, opts ...gax.CallOption) versionIterator {
	return c.KeyManagementClient.ListCryptoKeyVersions(ctx, req, opts...)
}

var _ cloudClient = kmsClient{}
