package c8y

import (
	"net/url"
	"testing"
)

func TestDevicePath(t *testing.T) {
	tests := []struct{ key, path string }{
		{"eb5e9d13-1caa-486b-bdda-130ca0d87df8", "/service/remoteaccess/device/eb5e9d13-1caa-486b-bdda-130ca0d87df8"},
		{"a/b?c#d%e", "/service/remoteaccess/device/a%2Fb%3Fc%23d%25e"},
		{"Schlüssel", "/service/remoteaccess/device/Schl%C3%BCssel"},
	}
	for _, tt := range tests {
		if got := DevicePath(tt.key); got != tt.path {
			t.Errorf("DevicePath(%q) = %q, want %q", tt.key, got, tt.path)
		}
		if key, ok := ParseDevicePath(tt.path); !ok || key != tt.key {
			t.Errorf("ParseDevicePath(%q) = %q, %v; want %q, true", tt.path, key, ok, tt.key)
		}
		// What a server sees: the path of the request URL, escaped.
		u, err := url.Parse("wss://t.example.com" + DevicePath(tt.key))
		if err != nil {
			t.Fatal(err)
		}
		if key, ok := ParseDevicePath(u.EscapedPath()); !ok || key != tt.key {
			t.Errorf("ParseDevicePath(%q) = %q, %v; want %q, true", u.EscapedPath(), key, ok, tt.key)
		}
	}
	for _, path := range []string{
		"", "/", "/service/remoteaccess/device/", "/service/remoteaccess/device",
		"/service/remoteaccess/client/k", "/service/remoteaccess/device/k/", "/service/remoteaccess/device/a/b",
		"/service/remoteaccess/device/a%20b", "/service/remoteaccess/device/%zz", "/service/remoteaccess/device/%00",
		"service/remoteaccess/device/k", "/SERVICE/remoteaccess/device/k",
	} {
		if key, ok := ParseDevicePath(path); ok {
			t.Errorf("ParseDevicePath(%q) = %q, true; want false", path, key)
		}
	}
	if Subprotocol != "binary" {
		t.Errorf("Subprotocol = %q, want \"binary\"", Subprotocol)
	}
}
