package cccp

import (
	"bufio"
	"strings"
	"testing"
)

func BenchmarkReadSerial(b *testing.B) {
	const line = "CLD-123456\r\n"
	r := strings.NewReader(line)
	br := bufio.NewReader(r)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(line)
		br.Reset(r)
		if _, err := ReadSerial(br); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseOnQuery(b *testing.B) {
	const query = "serial=CLD-123456&persistent=true&ip_whitelist=10.0.0.0/8,192.0.2.7&timeout=30"
	b.SetBytes(int64(len(query)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseOnQuery(query); err != nil {
			b.Fatal(err)
		}
	}
}
