package main

import "testing"

func TestKeysCreateHint(t *testing.T) {
	cases := []struct {
		self string
		g    globals
		want string
	}{
		{"bin/walytic", globals{dataDir: "./walytic-data"}, "bin/walytic --data-dir ./walytic-data keys create"},
		{"/usr/bin/walytic", globals{dataDir: "/var/lib/walytic", adminSocket: "/run/walytic/admin.sock"},
			"/usr/bin/walytic --data-dir /var/lib/walytic --admin-socket /run/walytic/admin.sock keys create"},
		{"walytic", globals{dataDir: "/srv/my data/it's"}, `walytic --data-dir '/srv/my data/it'\''s' keys create`},
	}
	for _, c := range cases {
		if got := keysCreateHint(c.self, c.g); got != c.want {
			t.Errorf("keysCreateHint(%q, %+v) = %q, want %q", c.self, c.g, got, c.want)
		}
	}
}
