package connstr

import (
	"fmt"
	"net/url"
	"strings"
)

// Storage is an Azure Storage connection string, as a hub's file upload
// settings name the account: Azure's, or Azurite's
// (UseDevelopmentStorage=true, or an explicit BlobEndpoint).
type Storage struct {
	AccountName string
	AccountKey  string
	// BlobEndpoint is the blob service's URL, with the account in its
	// path for Azurite's path-style addresses.
	BlobEndpoint *url.URL
}

// Azurite's well-known development account.
const (
	DevStorageAccount  = "devstoreaccount1"
	DevStorageKey      = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
	DevStorageEndpoint = "https://127.0.0.1:10000/devstoreaccount1"
)

var storageKeys = []string{"DefaultEndpointsProtocol", "AccountName", "AccountKey", "BlobEndpoint", "EndpointSuffix",
	"QueueEndpoint", "TableEndpoint", "FileEndpoint", "UseDevelopmentStorage"}

// ParseStorage parses a storage connection string. Without a
// BlobEndpoint the endpoint is {protocol}://{account}.blob.{suffix}.
// UseDevelopmentStorage=true is Azurite's account over HTTPS, which the
// device SDKs need.
func ParseStorage(s string) (Storage, error) {
	m, err := split(s, storageKeys)
	if err != nil {
		return Storage{}, err
	}
	if strings.EqualFold(m["UseDevelopmentStorage"], "true") {
		u, _ := url.Parse(DevStorageEndpoint)
		return Storage{AccountName: DevStorageAccount, AccountKey: DevStorageKey, BlobEndpoint: u}, nil
	}
	st := Storage{AccountName: m["AccountName"], AccountKey: m["AccountKey"]}
	for _, k := range []string{"AccountName", "AccountKey"} {
		if err := require(k, m[k]); err != nil {
			return Storage{}, err
		}
	}
	if err := checkKey(st.AccountKey); err != nil {
		return Storage{}, err
	}
	endpoint := m["BlobEndpoint"]
	if endpoint == "" {
		proto, suffix := m["DefaultEndpointsProtocol"], m["EndpointSuffix"]
		if proto == "" {
			proto = "https"
		}
		if suffix == "" {
			suffix = "core.windows.net"
		}
		endpoint = proto + "://" + st.AccountName + ".blob." + suffix
	}
	u, err := url.Parse(strings.TrimSuffix(endpoint, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return Storage{}, fmt.Errorf("connection string: BlobEndpoint %q is not an http(s) URL", endpoint)
	}
	st.BlobEndpoint = u
	return st, nil
}

// BlobHost is the blob endpoint as IoT Hub's hostName field gives it:
// host[:port] and the account path, if any, with no scheme.
func (s Storage) BlobHost() string { return s.BlobEndpoint.Host + s.BlobEndpoint.Path }
