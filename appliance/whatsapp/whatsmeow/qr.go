package whatsmeow

import (
	"errors"

	qrcode "github.com/skip2/go-qrcode"
)

// QRPNG renders a pairing QR code (the string from Pairer.QR) as a PNG of
// size×size pixels (256 if size <= 0), with medium error correction like
// WhatsApp Web's own code.
func QRPNG(code string, size int) ([]byte, error) {
	if code == "" {
		return nil, errors.New("whatsmeow: empty QR code")
	}
	if size <= 0 {
		size = 256
	}
	return qrcode.Encode(code, qrcode.Medium, size)
}

// QRTerminal renders a pairing QR code as text for a terminal: two rows of
// modules per line with Unicode half blocks, quiet zone included.
func QRTerminal(code string) (string, error) {
	q, err := qrcode.New(code, qrcode.Low)
	if err != nil {
		return "", err
	}
	bm := q.Bitmap() // true = dark, with a 4-module quiet zone
	var out []rune
	for y := 0; y < len(bm); y += 2 {
		for x := 0; x < len(bm[y]); x++ {
			top := bm[y][x]
			bottom := y+1 < len(bm) && bm[y+1][x]
			switch {
			case top && bottom:
				out = append(out, ' ')
			case top:
				out = append(out, '▄')
			case bottom:
				out = append(out, '▀')
			default:
				out = append(out, '█')
			}
		}
		out = append(out, '\n')
	}
	return string(out), nil
}
