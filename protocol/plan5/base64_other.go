//go:build !amd64 || purego

package plan5

// Without an assembly loop (another CPU, or built with -tags purego) the
// portable ones of base64.go do it all.

func hasSIMD() bool { return false }

func encodeSIMD(dst, src []byte) int { return 0 }

func decodeSIMD(dst, src []byte) int { return 0 }
