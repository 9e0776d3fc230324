package main

import (
	"bytes"
	"regexp"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestQuickstart(t *testing.T) {
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	want := regexp.MustCompile(`^1\. discover point listening on 127\.0\.0\.1:\d+
2\. server registered as "printer-7" \(its address: printer-7@127\.0\.0\.1:\d+\)
3\. client connected to printer-7@127\.0\.0\.1:\d+ through the discover point
4\. server got "hello from the client" from 127\.0\.0\.1:\d+
5\. client got "printed: hello from the client"
6\. closed the server and the discover point; done
$`)
	if !want.Match(out.Bytes()) {
		t.Errorf("output:\n%s\nwant it to match:\n%s", out.String(), want)
	}
}
