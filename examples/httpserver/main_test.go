package main

import (
	"bytes"
	"regexp"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHTTPServer(t *testing.T) {
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	want := regexp.MustCompile(`^serving HTTP as web@127\.0\.0\.1:\d+
GET http://web/hello: 200 OK
hello, 127\.0\.0\.1:\d+, from a server with no public address
$`)
	if !want.Match(out.Bytes()) {
		t.Errorf("output:\n%s\nwant it to match:\n%s", out.String(), want)
	}
}
