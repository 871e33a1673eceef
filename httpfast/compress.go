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

// encodingFor picks the response encoding from Accept-Encoding: zstd first,
// then gzip, else none. q-values of 0 refuse an encoding.
func encodingFor(ctx *fasthttp.RequestCtx) string {
	ae := ctx.Request.Header.Peek("Accept-Encoding")
	if len(ae) == 0 {
		return ""
	}
	zstdOK, gzipOK := false, false
	for _, part := range bytes.Split(ae, []byte(",")) {
		name, params, _ := bytes.Cut(bytes.TrimSpace(part), []byte(";"))
		name = bytes.ToLower(bytes.TrimSpace(name))
		refused := qualityZero(params)
		switch string(name) {
		case "zstd":
			zstdOK = !refused
		case "gzip":
			gzipOK = !refused
		}
	}
	switch {
	case zstdOK:
		return "zstd"
	case gzipOK:
		return "gzip"
	}
	return ""
}

// qualityZero reports whether Accept-Encoding parameters carry q=0 (also
// written 0.0, 0.000): "not acceptable".
func qualityZero(params []byte) bool {
	for _, p := range bytes.Split(params, []byte(";")) {
		k, v, ok := bytes.Cut(bytes.TrimSpace(p), []byte("="))
		if !ok || !bytes.EqualFold(bytes.TrimSpace(k), []byte("q")) {
			continue
		}
		q, err := strconv.ParseFloat(string(bytes.TrimSpace(v)), 64)
		return err == nil && q == 0
	}
	return false
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
