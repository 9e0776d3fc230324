//go:build !amd64

package plan5

// Without an assembly loop the portable ones of base64.go do it all.

func hasSIMD() bool { return false }

func encodeSIMD(dst, src []byte) int { return 0 }

func decodeSIMD(dst, src []byte) int { return 0 }
