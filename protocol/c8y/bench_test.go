package c8y

import "testing"

func BenchmarkParseOperation(b *testing.B) {
	for name, line := range map[string]string{
		"JSON":      seedOperation,
		"SmartREST": "530,DeviceSerial,10.0.0.67,22," + seedKey,
	} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(line)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseOperation([]byte(line)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
