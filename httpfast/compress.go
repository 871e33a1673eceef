package httpfast

import (
	"bytes"
	"io"
	"strconv"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/valyala/fasthttp"
)

// compressMin is the body size below which compression is not worth it.
const compressMin = 1024

// encodingFor picks the response encoding from Accept-Encoding (every line
// of it): zstd or gzip, whichever has the higher q-value (zstd on a tie; "*"
// stands for both where they are not named), none when both are refused
// (q=0) or the client prefers identity.
func encodingFor(ctx *fasthttp.RequestCtx) string {
	lines := ctx.Request.Header.PeekAll("Accept-Encoding")
	if len(lines) == 0 {
		return ""
	}
	zstdQ, gzipQ, anyQ, identityQ := -1.0, -1.0, -1.0, -1.0 // -1: not named
	for _, ae := range lines {
		for part := range bytes.SplitSeq(ae, []byte(",")) {
			name, params, _ := bytes.Cut(bytes.TrimSpace(part), []byte(";"))
			q := quality(params)
			switch string(bytes.ToLower(bytes.TrimSpace(name))) {
			case "zstd":
				zstdQ = q
			case "gzip":
				gzipQ = q
			case "*":
				anyQ = q
			case "identity":
				identityQ = q
			}
		}
	}
	if zstdQ < 0 {
		zstdQ = anyQ
	}
	if gzipQ < 0 {
		gzipQ = anyQ
	}
	best, q := "zstd", zstdQ
	if gzipQ > zstdQ {
		best, q = "gzip", gzipQ
	}
	if q <= 0 || identityQ > q {
		return ""
	}
	return best
}

// quality is the q-value among Accept-Encoding parameters: 1 when absent,
// 0 (not acceptable) when unreadable.
func quality(params []byte) float64 {
	for p := range bytes.SplitSeq(params, []byte(";")) {
		k, v, ok := bytes.Cut(bytes.TrimSpace(p), []byte("="))
		if !ok || !bytes.EqualFold(bytes.TrimSpace(k), []byte("q")) {
			continue
		}
		q, err := strconv.ParseFloat(string(bytes.TrimSpace(v)), 64)
		if err != nil || !(q >= 0 && q <= 1) { // NaN too
			return 0
		}
		return q
	}
	return 1
}

var zstdEncoder = sync.OnceValue(func() *zstd.Encoder {
	e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault))
	return e
})

var gzipPool = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(io.Discard, gzip.DefaultCompression)
	return w
}}

// compressBody compresses a finished response body in place when the client
// accepts it and it is large enough.
func compressBody(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Add("Vary", "Accept-Encoding")
	body := ctx.Response.Body()
	if len(body) < compressMin {
		return
	}
	switch encodingFor(ctx) {
	case "zstd":
		out := zstdEncoder().EncodeAll(body, make([]byte, 0, len(body)/3))
		ctx.Response.Header.Set("Content-Encoding", "zstd")
		ctx.SetBody(out)
	case "gzip":
		var buf bytes.Buffer
		w := gzipPool.Get().(*gzip.Writer)
		w.Reset(&buf)
		_, _ = w.Write(body)
		_ = w.Close()
		gzipPool.Put(w)
		ctx.Response.Header.Set("Content-Encoding", "gzip")
		ctx.SetBody(buf.Bytes())
	}
}

// exportZstdWindow bounds the memory of one zstd-compressed export.
const exportZstdWindow = 1 << 20

// encodeStream wraps a streaming response writer in the chosen encoding; the
// returned func finishes the encoded stream.
func encodeStream(enc string, w io.Writer) (io.Writer, func() error) {
	switch enc {
	case "zstd":
		// A 1 MiB window and the low-memory encoder: the default window
		// made each export hold about 29 MB, so a key's burst of exports
		// could take gigabytes.
		zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(exportZstdWindow), zstd.WithLowerEncoderMem(true))
		if err == nil {
			return zw, zw.Close
		}
	case "gzip":
		gw := gzip.NewWriter(w)
		return gw, gw.Close
	}
	return w, func() error { return nil }
}
