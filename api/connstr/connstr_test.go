package connstr

import (
	"strings"
	"testing"
)

const key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

func TestParseDevice(t *testing.T) {
	tests := []struct {
		name, in string
		want     Device
		errPart  string
	}{
		{"Device", "HostName=myhub.azure-devices.net;DeviceId=dev1;SharedAccessKey=" + key,
			Device{HostName: "myhub.azure-devices.net", DeviceID: "dev1", SharedAccessKey: key}, ""},
		{"TrailingSemicolon", "HostName=h.local;DeviceId=d;SharedAccessKey=" + key + ";",
			Device{HostName: "h.local", DeviceID: "d", SharedAccessKey: key}, ""},
		{"Module", "HostName=h.local;DeviceId=d;ModuleId=m;SharedAccessKey=" + key,
			Device{HostName: "h.local", DeviceID: "d", ModuleID: "m", SharedAccessKey: key}, ""},
		{"Gateway", "HostName=h.local;DeviceId=d;SharedAccessKey=" + key + ";GatewayHostName=localhost:8883",
			Device{HostName: "h.local", DeviceID: "d", SharedAccessKey: key, GatewayHostName: "localhost:8883"}, ""},
		{"PolicyKey", "HostName=h.local;DeviceId=d;SharedAccessKeyName=device;SharedAccessKey=" + key,
			Device{HostName: "h.local", DeviceID: "d", SharedAccessKeyName: "device", SharedAccessKey: key}, ""},
		{"Token", "HostName=h.local;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=h.local%2Fdevices%2Fd&sig=a%3D&se=1",
			Device{HostName: "h.local", DeviceID: "d", SharedAccessSignature: "SharedAccessSignature sr=h.local%2Fdevices%2Fd&sig=a%3D&se=1"}, ""},
		{"X509", "HostName=h.local;DeviceId=d;x509=true", Device{HostName: "h.local", DeviceID: "d", X509: true}, ""},
		{"Port", "HostName=localhost:8883;DeviceId=d;SharedAccessKey=" + key,
			Device{HostName: "localhost:8883", DeviceID: "d", SharedAccessKey: key}, ""},
		{"ErrEmpty", "", Device{}, "empty"},
		{"ErrNoHost", "DeviceId=d;SharedAccessKey=" + key, Device{}, "missing HostName"},
		{"ErrNoDevice", "HostName=h;SharedAccessKey=" + key, Device{}, "missing DeviceId"},
		{"ErrNoCredential", "HostName=h;DeviceId=d", Device{}, "exactly one"},
		{"ErrTwoCredentials", "HostName=h;DeviceId=d;x509=true;SharedAccessKey=" + key, Device{}, "exactly one"},
		{"ErrX509False", "HostName=h;DeviceId=d;x509=false", Device{}, `x509 must be "true"`},
		{"ErrBadKey", "HostName=h;DeviceId=d;SharedAccessKey=not*base64", Device{}, "not valid base64"},
		{"ErrWrongCase", "hostname=h;DeviceId=d;SharedAccessKey=" + key, Device{}, `unknown key "hostname"`},
		{"ErrNotPair", "HostName=h;DeviceId;SharedAccessKey=" + key, Device{}, "not a key=value pair"},
		{"ErrDuplicate", "HostName=h;HostName=g;DeviceId=d;SharedAccessKey=" + key, Device{}, "twice"},
		{"ErrHostWithScheme", "HostName=https://h;DeviceId=d;SharedAccessKey=" + key, Device{}, "not a host name"},
		{"ErrBadPort", "HostName=h:x;DeviceId=d;SharedAccessKey=" + key, Device{}, "numeric port"},
		{"ErrKeyNameWithoutKey", "HostName=h;DeviceId=d;SharedAccessKeyName=device;x509=true", Device{}, "needs SharedAccessKey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDevice(tt.in)
			if tt.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errPart) {
					t.Fatalf("error %v, want one containing %q", err, tt.errPart)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
			again, err := ParseDevice(got.String())
			if err != nil || again != got {
				t.Fatalf("round trip through %q: %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestParseService(t *testing.T) {
	in := "HostName=myhub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=" + key
	s, err := ParseService(in)
	if err != nil || s.String() != in || s.SharedAccessKeyName != "iothubowner" {
		t.Fatalf("got %+v, %v", s, err)
	}
	for _, bad := range []string{
		"HostName=h;SharedAccessKey=" + key,
		"HostName=h;SharedAccessKeyName=p",
		"HostName=h;SharedAccessKeyName=p;SharedAccessKey=" + key + ";DeviceId=d",
		"SharedAccessKeyName=p;SharedAccessKey=" + key,
	} {
		if _, err := ParseService(bad); err == nil {
			t.Errorf("ParseService(%q) accepted", bad)
		}
	}
}

func FuzzParseDevice(f *testing.F) {
	f.Add("HostName=myhub.azure-devices.net;DeviceId=dev1;SharedAccessKey=" + key)
	f.Add("HostName=h;DeviceId=d;ModuleId=m;x509=true;GatewayHostName=g:1")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDevice(s)
		if err != nil {
			return
		}
		again, err := ParseDevice(d.String())
		if err != nil || again != d {
			t.Fatalf("round trip of %q: %+v, %v", s, again, err)
		}
	})
}

func TestParseStorage(t *testing.T) {
	st, err := ParseStorage("DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey=" + DevStorageKey + ";BlobEndpoint=https://127.0.0.1:10000/devstoreaccount1/;")
	if err != nil || st.BlobHost() != "127.0.0.1:10000/devstoreaccount1" || st.AccountName != DevStorageAccount {
		t.Fatalf("%+v %v", st, err)
	}
	st, err = ParseStorage("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net")
	if err != nil || st.BlobHost() != "acct.blob.core.windows.net" {
		t.Fatalf("%+v %v", st, err)
	}
	if st, err := ParseStorage("UseDevelopmentStorage=true"); err != nil || st.BlobEndpoint.String() != DevStorageEndpoint {
		t.Fatalf("%+v %v", st, err)
	}
	for _, bad := range []string{"", "AccountName=a", "AccountName=a;AccountKey=***", "AccountName=a;AccountKey=a2V5;BlobEndpoint=ftp://x", "Nope=1"} {
		if _, err := ParseStorage(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
