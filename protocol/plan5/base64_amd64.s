//go:build !purego

#include "textflag.h"

// The AVX2 loops of base64_amd64.go, after Wojciech Muła and Daniel
// Lemire, "Faster Base64 Encoding and Decoding Using AVX2 Instructions"
// (ACM Transactions on the Web, 2018), in the form aklomp/base64 gives
// them. Go's assembler takes the operands in the reverse of Intel's
// order: the destination last.

// func encodeAVX2(dst, src *byte, blocks int)
//
// Each block reads 32 bytes at src, of which it encodes the first 24,
// and writes 32 characters at dst.
TEXT ·encodeAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ blocks+16(FP), CX
	TESTQ CX, CX
	JZ   encdone
	VMOVDQU encPerm<>(SB), Y9
	VMOVDQU encShuf<>(SB), Y8
	VPBROADCASTD encMaskA<>(SB), Y10
	VPBROADCASTD encMulA<>(SB), Y11
	VPBROADCASTD encMaskB<>(SB), Y12
	VPBROADCASTD encMulB<>(SB), Y13
	VPBROADCASTB enc51<>(SB), Y14
	VPBROADCASTB enc26<>(SB), Y15
	VPBROADCASTB enc13<>(SB), Y7
	VBROADCASTI128 encLUT<>(SB), Y6

encloop:
	// Move dwords 0-6 up by one, so that each lane holds 12 bytes of
	// input: bytes 4-15 of the low lane, 0-11 of the high one.
	VPERMD  (SI), Y9, Y0
	// Each dword gets the bytes b1 b0 b2 b1 of one 3-byte group.
	VPSHUFB Y8, Y0, Y0
	// The four 6-bit values of each group, one a byte.
	VPAND    Y10, Y0, Y1
	VPMULHUW Y11, Y1, Y1
	VPAND    Y12, Y0, Y2
	VPMULLW  Y13, Y2, Y2
	VPOR     Y1, Y2, Y0
	// The offset from each value to its character: the index into encLUT
	// is 13 for values below 26, 0 for 26-51, 1-12 for 52-63.
	VPSUBUSB Y14, Y0, Y1
	VPCMPGTB Y0, Y15, Y2
	VPAND    Y7, Y2, Y2
	VPOR     Y2, Y1, Y1
	VPSHUFB  Y1, Y6, Y1
	VPADDB   Y1, Y0, Y0
	VMOVDQU  Y0, (DI)
	ADDQ $24, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  encloop
	VZEROUPPER

encdone:
	RET

// func decodeAVX2(dst, src *byte, blocks int) int
//
// Each block reads 32 characters at src and writes 32 bytes at dst, of
// which the first 24 are the block's. It stops before a block that holds
// a character outside the alphabet ('=' too), and returns the blocks done.
TEXT ·decodeAVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ blocks+16(FP), CX
	XORQ AX, AX
	TESTQ CX, CX
	JZ   decdone
	VBROADCASTI128 decLutLo<>(SB), Y8
	VBROADCASTI128 decLutHi<>(SB), Y9
	VBROADCASTI128 decLutRoll<>(SB), Y10
	VPBROADCASTB dec2F<>(SB), Y11
	VPBROADCASTD decMadd1<>(SB), Y12
	VPBROADCASTD decMadd2<>(SB), Y13
	VBROADCASTI128 decShuf<>(SB), Y14
	VMOVDQU decPerm<>(SB), Y15

decloop:
	VMOVDQU (SI), Y0
	// Classify by nibbles: a character is in the alphabet when its
	// entries in decLutLo and decLutHi share no bit.
	VPSRLD  $4, Y0, Y1
	VPAND   Y11, Y1, Y1
	VPAND   Y11, Y0, Y2
	VPSHUFB Y1, Y9, Y3
	VPSHUFB Y2, Y8, Y2
	VPTEST  Y3, Y2
	JNZ     decvzero
	// Add to each character the offset to its value, chosen by its high
	// nibble ('/' by an entry of its own).
	VPCMPEQB Y11, Y0, Y2
	VPADDB   Y2, Y1, Y1
	VPSHUFB  Y1, Y10, Y1
	VPADDB   Y1, Y0, Y0
	// Pack four 6-bit values into three bytes, and the lanes together.
	VPMADDUBSW Y12, Y0, Y0
	VPMADDWD   Y13, Y0, Y0
	VPSHUFB    Y14, Y0, Y0
	VPERMD     Y0, Y15, Y0
	VMOVDQU    Y0, (DI)
	ADDQ $32, SI
	ADDQ $24, DI
	INCQ AX
	DECQ CX
	JNZ  decloop

decvzero:
	VZEROUPPER

decdone:
	MOVQ AX, ret+24(FP)
	RET

DATA encPerm<>+0x00(SB)/4, $0
DATA encPerm<>+0x04(SB)/4, $0
DATA encPerm<>+0x08(SB)/4, $1
DATA encPerm<>+0x0c(SB)/4, $2
DATA encPerm<>+0x10(SB)/4, $3
DATA encPerm<>+0x14(SB)/4, $4
DATA encPerm<>+0x18(SB)/4, $5
DATA encPerm<>+0x1c(SB)/4, $6
GLOBL encPerm<>(SB), RODATA|NOPTR, $32

// Low lane: 5,4,6,5, 8,7,9,8, 11,10,12,11, 14,13,15,14 (input bytes
// 4-15); high lane: 1,0,2,1, 4,3,5,4, 7,6,8,7, 10,9,11,10 (bytes 0-11).
DATA encShuf<>+0x00(SB)/8, $0x0809070805060405
DATA encShuf<>+0x08(SB)/8, $0x0e0f0d0e0b0c0a0b
DATA encShuf<>+0x10(SB)/8, $0x0405030401020001
DATA encShuf<>+0x18(SB)/8, $0x0a0b090a07080607
GLOBL encShuf<>(SB), RODATA|NOPTR, $32

DATA encMaskA<>+0(SB)/4, $0x0fc0fc00
GLOBL encMaskA<>(SB), RODATA|NOPTR, $4
DATA encMulA<>+0(SB)/4, $0x04000040
GLOBL encMulA<>(SB), RODATA|NOPTR, $4
DATA encMaskB<>+0(SB)/4, $0x003f03f0
GLOBL encMaskB<>(SB), RODATA|NOPTR, $4
DATA encMulB<>+0(SB)/4, $0x01000010
GLOBL encMulB<>(SB), RODATA|NOPTR, $4
DATA enc51<>+0(SB)/1, $51
GLOBL enc51<>(SB), RODATA|NOPTR, $1
DATA enc26<>+0(SB)/1, $26
GLOBL enc26<>(SB), RODATA|NOPTR, $1
DATA enc13<>+0(SB)/1, $13
GLOBL enc13<>(SB), RODATA|NOPTR, $1

// 'a'-26, ten times '0'-52, '+'-62, '/'-63, 'A', 0, 0.
DATA encLUT<>+0x00(SB)/8, $0xfcfcfcfcfcfcfc47
DATA encLUT<>+0x08(SB)/8, $0x000041f0edfcfcfc
GLOBL encLUT<>(SB), RODATA|NOPTR, $16

// 0x15, nine times 0x11, 0x13, 0x1a, 0x1b, 0x1b, 0x1b, 0x1a.
DATA decLutLo<>+0x00(SB)/8, $0x1111111111111115
DATA decLutLo<>+0x08(SB)/8, $0x1a1b1b1b1a131111
GLOBL decLutLo<>(SB), RODATA|NOPTR, $16

// 0x10, 0x10, 1, 2, 4, 8, 4, 8, eight times 0x10.
DATA decLutHi<>+0x00(SB)/8, $0x0804080402011010
DATA decLutHi<>+0x08(SB)/8, $0x1010101010101010
GLOBL decLutHi<>(SB), RODATA|NOPTR, $16

// 0, 16, 19, 4, -65, -65, -71, -71, eight zeros.
DATA decLutRoll<>+0x00(SB)/8, $0xb9b9bfbf04131000
DATA decLutRoll<>+0x08(SB)/8, $0x0000000000000000
GLOBL decLutRoll<>(SB), RODATA|NOPTR, $16

DATA dec2F<>+0(SB)/1, $0x2f
GLOBL dec2F<>(SB), RODATA|NOPTR, $1
DATA decMadd1<>+0(SB)/4, $0x01400140
GLOBL decMadd1<>(SB), RODATA|NOPTR, $4
DATA decMadd2<>+0(SB)/4, $0x00011000
GLOBL decMadd2<>(SB), RODATA|NOPTR, $4

// 2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, four zeroing entries.
DATA decShuf<>+0x00(SB)/8, $0x090a040506000102
DATA decShuf<>+0x08(SB)/8, $0x808080800c0d0e08
GLOBL decShuf<>(SB), RODATA|NOPTR, $16

DATA decPerm<>+0x00(SB)/4, $0
DATA decPerm<>+0x04(SB)/4, $1
DATA decPerm<>+0x08(SB)/4, $2
DATA decPerm<>+0x0c(SB)/4, $4
DATA decPerm<>+0x10(SB)/4, $5
DATA decPerm<>+0x14(SB)/4, $6
DATA decPerm<>+0x18(SB)/4, $7
DATA decPerm<>+0x1c(SB)/4, $7
GLOBL decPerm<>(SB), RODATA|NOPTR, $32
