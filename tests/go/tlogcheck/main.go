// Command tlogcheck checks a retentiond proof log with Go's reference packages
// golang.org/x/mod/sumdb/note and golang.org/x/mod/sumdb/tlog, an implementation
// independent of retentiond's own.
//
// It opens the checkpoint with note.Open, recomputes every stored hash from the entry
// bundles with tlog.StoredHashes, compares every tile file byte for byte with
// tlog.ReadTileData, checks the tree hash with tlog.TreeHash (from the recomputed hashes
// and through tlog.TileHashReader over the C2SP tile files), proves and checks every
// entry with tlog.ProveRecord/CheckRecord, checks consistency proofs with
// tlog.ProveTree/CheckTree, and checks the proofs retentiond produced (-proofs). With
// -skey it also checks that note.NewSigner accepts retentiond's private key text and
// writes a note signed by Go to -sign-out.
//
// Build offline: GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off go build
//
// The C2SP layout is tile/<L>/<N> and tile/entries/<N>; Go's sumdb layout is
// tile/8/<L>/<N> and tile/8/data/<N>: paths are mapped here.
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const height = 8

type inclusion struct {
	Index    int64    `json:"index"`
	TreeSize int64    `json:"tree_size"`
	Root     string   `json:"root"`
	LeafHash string   `json:"leaf_hash"`
	Hashes   []string `json:"hashes"`
}

type consistency struct {
	OldSize int64    `json:"old_size"`
	OldRoot string   `json:"old_root"`
	NewSize int64    `json:"new_size"`
	NewRoot string   `json:"new_root"`
	Hashes  []string `json:"hashes"`
}

type proofFile struct {
	Inclusion   []inclusion   `json:"inclusion"`
	Consistency []consistency `json:"consistency"`
}

type report struct {
	Origin             string `json:"origin"`
	Size               int64  `json:"size"`
	Root               string `json:"root"`
	Entries            int64  `json:"entries"`
	TilesCompared      int    `json:"tiles_compared"`
	BundlesCompared    int    `json:"bundles_compared"`
	RecordsProved      int64  `json:"records_proved"`
	TileReaderProofs   int    `json:"tile_reader_proofs"`
	TreeProofs         int    `json:"tree_proofs"`
	PythonInclusion    int    `json:"python_inclusion_checked"`
	PythonConsistency  int    `json:"python_consistency_checked"`
	SignerAccepted     bool   `json:"signer_accepted"`
	GoNoteOpenedByGo   bool   `json:"go_note_opened_by_go"`
	VerifierKeyHashHex string `json:"verifier_key_hash"`
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "tlogcheck: "+format+"\n", args...)
	os.Exit(1)
}

// c2spPath maps a Go tile to its C2SP path.
func c2spPath(t tlog.Tile) string {
	p := strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/", height))
	if strings.HasPrefix(p, "data/") {
		return "tile/entries/" + strings.TrimPrefix(p, "data/")
	}
	return "tile/" + p
}

// goTile parses a C2SP path with Go's own parser.
func goTile(path string) (tlog.Tile, error) {
	rest := strings.TrimPrefix(path, "tile/")
	if strings.HasPrefix(rest, "entries/") {
		rest = "data/" + strings.TrimPrefix(rest, "entries/")
	}
	t, err := tlog.ParseTilePath(fmt.Sprintf("tile/%d/%s", height, rest))
	if err != nil {
		return t, err
	}
	if c2spPath(t) != path {
		return t, fmt.Errorf("path %s does not round-trip (%s)", path, c2spPath(t))
	}
	return t, nil
}

// tileFiles is a tlog.TileReader over the C2SP tile files of one log folder.
type tileFiles struct {
	dir   string
	cache map[tlog.Tile][]byte
}

func (r *tileFiles) Height() int { return height }

func (r *tileFiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		if d, ok := r.cache[t]; ok {
			out[i] = d
			continue
		}
		d, err := os.ReadFile(filepath.Join(r.dir, filepath.FromSlash(c2spPath(t))))
		if err != nil {
			return nil, err
		}
		r.cache[t] = d
		out[i] = d
	}
	return out, nil
}

func (r *tileFiles) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

func decodeBundle(data []byte, path string) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			fail("%s: truncated length prefix", path)
		}
		n := int(binary.BigEndian.Uint16(data))
		data = data[2:]
		if len(data) < n {
			fail("%s: truncated entry", path)
		}
		out = append(out, data[:n])
		data = data[n:]
	}
	return out
}

func parseHash(s, what string) tlog.Hash {
	h, err := tlog.ParseHash(s)
	if err != nil {
		fail("%s: %v", what, err)
	}
	return h
}

func parseHashes(list []string, what string) []tlog.Hash {
	out := make([]tlog.Hash, len(list))
	for i, s := range list {
		out[i] = parseHash(s, what)
	}
	return out
}

func main() {
	logDir := flag.String("log", "", "log folder")
	vkey := flag.String("vkey", "", "verifier key text")
	proofs := flag.String("proofs", "", "JSON file of proofs made by retentiond")
	skey := flag.String("skey", "", "retentiond private key text to load with note.NewSigner")
	signIn := flag.String("sign", "", "text file to sign with -skey")
	signOut := flag.String("sign-out", "", "where to write the note Go signed")
	flag.Parse()
	var rep report

	verifier, err := note.NewVerifier(*vkey)
	if err != nil {
		fail("note.NewVerifier: %v", err)
	}
	rep.VerifierKeyHashHex = fmt.Sprintf("%08x", verifier.KeyHash())

	if *skey != "" {
		signer, err := note.NewSigner(*skey)
		if err != nil {
			fail("note.NewSigner: %v", err)
		}
		if signer.Name() != verifier.Name() || signer.KeyHash() != verifier.KeyHash() {
			fail("signer %s+%08x does not match verifier", signer.Name(), signer.KeyHash())
		}
		text, err := os.ReadFile(*signIn)
		if err != nil {
			fail("%v", err)
		}
		msg, err := note.Sign(&note.Note{Text: string(text)}, signer)
		if err != nil {
			fail("note.Sign: %v", err)
		}
		if _, err := note.Open(msg, note.VerifierList(verifier)); err != nil {
			fail("note.Open of Go's own note: %v", err)
		}
		rep.SignerAccepted, rep.GoNoteOpenedByGo = true, true
		if err := os.WriteFile(*signOut, msg, 0o644); err != nil {
			fail("%v", err)
		}
		if *logDir == "" {
			json.NewEncoder(os.Stdout).Encode(rep)
			return
		}
	}

	// Checkpoint.
	msg, err := os.ReadFile(filepath.Join(*logDir, "checkpoint"))
	if err != nil {
		fail("%v", err)
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		fail("note.Open(checkpoint): %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		fail("checkpoint: too few lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || strconv.FormatInt(size, 10) != lines[1] {
		fail("checkpoint: bad size %q", lines[1])
	}
	tree := tlog.Tree{N: size, Hash: parseHash(lines[2], "checkpoint root")}
	rep.Origin, rep.Size, rep.Root = lines[0], size, lines[2]

	// Entries, in order, from the current bundles; recompute every stored hash.
	var stored []tlog.Hash
	mem := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x < 0 || x >= int64(len(stored)) {
				return nil, fmt.Errorf("stored hash %d not computed", x)
			}
			out[i] = stored[x]
		}
		return out, nil
	})
	var entries [][]byte
	for k := int64(0); k*256 < size; k++ {
		w := size - k*256
		if w > 256 {
			w = 256
		}
		t := tlog.Tile{H: height, L: -1, N: k, W: int(w)}
		p := c2spPath(t)
		data, err := os.ReadFile(filepath.Join(*logDir, filepath.FromSlash(p)))
		if err != nil {
			fail("%v", err)
		}
		got := decodeBundle(data, p)
		if int64(len(got)) != w {
			fail("%s: %d entries, want %d", p, len(got), w)
		}
		for _, e := range got {
			hs, err := tlog.StoredHashes(int64(len(entries)), e, mem)
			if err != nil {
				fail("StoredHashes: %v", err)
			}
			stored = append(stored, hs...)
			entries = append(entries, e)
		}
	}
	rep.Entries = int64(len(entries))
	if size > 0 {
		th, err := tlog.TreeHash(size, mem)
		if err != nil || th != tree.Hash {
			fail("TreeHash from the entries = %v (%v), checkpoint says %v", th, err, tree.Hash)
		}
	}

	// Every tile and bundle file: Go's own path parser, Go's own tile contents.
	present := map[string]bool{}
	err = filepath.WalkDir(filepath.Join(*logDir, "tile"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		rel, _ := filepath.Rel(*logDir, p)
		rel = filepath.ToSlash(rel)
		present[rel] = true
		t, err := goTile(rel)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if t.L == -1 {
			if t.N*256+int64(t.W) > size {
				return fmt.Errorf("%s: beyond the checkpoint", rel)
			}
			var want bytes.Buffer
			for _, e := range entries[t.N*256 : t.N*256+int64(t.W)] {
				binary.Write(&want, binary.BigEndian, uint16(len(e)))
				want.Write(e)
			}
			if !bytes.Equal(want.Bytes(), data) {
				return fmt.Errorf("%s: differs from the entries", rel)
			}
			rep.BundlesCompared++
			return nil
		}
		if t.N<<height+int64(t.W) > size>>(uint(t.L)*height) {
			return fmt.Errorf("%s: beyond the checkpoint", rel)
		}
		want, err := tlog.ReadTileData(t, mem)
		if err != nil {
			return err
		}
		if !bytes.Equal(want, data) {
			return fmt.Errorf("%s: differs from tlog.ReadTileData", rel)
		}
		rep.TilesCompared++
		return nil
	})
	if err != nil && !(size == 0 && errors.Is(err, fs.ErrNotExist)) {
		fail("tiles: %v", err)
	}
	// Every tile a tree of this size needs is there (tlog.NewTiles lists them, plus
	// every narrower partial, which a log may or may not keep).
	for _, t := range tlog.NewTiles(height, 0, size) {
		n := size >> (uint(t.L) * height)
		if t.W == 256 || t.N<<height+int64(t.W) == n {
			if !present[c2spPath(t)] {
				fail("%s: missing", c2spPath(t))
			}
		}
	}

	// The tree hash through Go's authenticating TileHashReader over our files.
	files := &tileFiles{dir: *logDir, cache: map[tlog.Tile][]byte{}}
	thr := tlog.TileHashReader(tree, files)
	if size > 0 {
		th, err := tlog.TreeHash(size, thr)
		if err != nil || th != tree.Hash {
			fail("TreeHash via TileHashReader = %v (%v), want %v", th, err, tree.Hash)
		}
	}

	// Every record: RecordHash(entry) proved in the tree and checked.
	for i, e := range entries {
		p, err := tlog.ProveRecord(size, int64(i), mem)
		if err != nil {
			fail("ProveRecord(%d): %v", i, err)
		}
		if err := tlog.CheckRecord(p, size, tree.Hash, int64(i), tlog.RecordHash(e)); err != nil {
			fail("CheckRecord(%d): %v", i, err)
		}
		rep.RecordsProved++
		if i%97 == 0 || i == len(entries)-1 { // and some through the tile files
			p2, err := tlog.ProveRecord(size, int64(i), thr)
			if err != nil {
				fail("ProveRecord(%d) via tiles: %v", i, err)
			}
			if err := tlog.CheckRecord(p2, size, tree.Hash, int64(i), tlog.RecordHash(e)); err != nil {
				fail("CheckRecord(%d) via tiles: %v", i, err)
			}
			rep.TileReaderProofs++
		}
	}
	for _, old := range []int64{1, 2, size / 3, size / 2, size - 1, size} {
		if old < 1 || old > size {
			continue
		}
		oh, err := tlog.TreeHash(old, mem)
		if err != nil {
			fail("TreeHash(%d): %v", old, err)
		}
		p, err := tlog.ProveTree(size, old, thr)
		if err != nil {
			fail("ProveTree(%d, %d): %v", size, old, err)
		}
		if err := tlog.CheckTree(p, size, tree.Hash, old, oh); err != nil {
			fail("CheckTree(%d, %d): %v", size, old, err)
		}
		rep.TreeProofs++
	}

	// Proofs made by retentiond.
	if *proofs != "" {
		raw, err := os.ReadFile(*proofs)
		if err != nil {
			fail("%v", err)
		}
		var pf proofFile
		if err := json.Unmarshal(raw, &pf); err != nil {
			fail("proofs: %v", err)
		}
		for _, ip := range pf.Inclusion {
			root := parseHash(ip.Root, "root")
			if ip.TreeSize == size && root != tree.Hash {
				fail("inclusion %d: root differs from the checkpoint", ip.Index)
			}
			if want, _ := tlog.TreeHash(ip.TreeSize, mem); want != root {
				fail("inclusion %d: root of size %d differs from Go's", ip.Index, ip.TreeSize)
			}
			leaf := parseHash(ip.LeafHash, "leaf")
			if leaf != tlog.RecordHash(entries[ip.Index]) {
				fail("inclusion %d: leaf hash differs from tlog.RecordHash(entry)", ip.Index)
			}
			p := tlog.RecordProof(parseHashes(ip.Hashes, "inclusion hash"))
			if err := tlog.CheckRecord(p, ip.TreeSize, root, ip.Index, leaf); err != nil {
				fail("CheckRecord(retentiond proof %d/%d): %v", ip.Index, ip.TreeSize, err)
			}
			rep.PythonInclusion++
		}
		for _, cp := range pf.Consistency {
			oldRoot := parseHash(cp.OldRoot, "old root")
			newRoot := parseHash(cp.NewRoot, "new root")
			if want, _ := tlog.TreeHash(cp.OldSize, mem); want != oldRoot {
				fail("consistency %d->%d: old root differs from Go's", cp.OldSize, cp.NewSize)
			}
			if want, _ := tlog.TreeHash(cp.NewSize, mem); want != newRoot {
				fail("consistency %d->%d: new root differs from Go's", cp.OldSize, cp.NewSize)
			}
			p := tlog.TreeProof(parseHashes(cp.Hashes, "consistency hash"))
			if err := tlog.CheckTree(p, cp.NewSize, newRoot, cp.OldSize, oldRoot); err != nil {
				fail("CheckTree(retentiond proof %d->%d): %v", cp.OldSize, cp.NewSize, err)
			}
			rep.PythonConsistency++
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		fail("%v", err)
	}
}
