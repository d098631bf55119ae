package qmp

import "context"

// NBDServerStart starts QEMU's NBD server on a unix socket. QEMU runs at
// most one NBD server: a second start fails with "NBD server already
// running", so snapshots of one VM must share it or take turns.
func (c *Client) NBDServerStart(ctx context.Context, unixSocket string) error {
	type path struct {
		Path string `json:"path"`
	}
	type addr struct {
		Type string `json:"type"`
		Data path   `json:"data"`
	}
	args := struct {
		Addr addr `json:"addr"`
	}{addr{Type: "unix", Data: path{unixSocket}}}
	return c.Execute(ctx, "nbd-server-start", args, nil)
}

// NBDServerStop stops the NBD server; delete its exports first.
func (c *Client) NBDServerStop(ctx context.Context) error {
	return c.Execute(ctx, "nbd-server-stop", nil, nil)
}

// BlockExportAdd exports a node over the NBD server. The NBD export name
// is nodeName (QEMU's default). bitmaps are offered to clients as the meta
// contexts "qemu:dirty-bitmap:NAME"; they may belong to the node or to a
// node in its backing chain, and must be disabled unless writable.
func (c *Client) BlockExportAdd(ctx context.Context, id, nodeName string, writable bool, bitmaps []string) error {
	args := struct {
		Type     string   `json:"type"`
		ID       string   `json:"id"`
		NodeName string   `json:"node-name"`
		Writable bool     `json:"writable"`
		Bitmaps  []string `json:"bitmaps,omitempty"`
	}{"nbd", id, nodeName, writable, bitmaps}
	return c.Execute(ctx, "block-export-add", args, nil)
}

// BlockExportDel starts removing an export; it is gone only at the event
// BLOCK_EXPORT_DELETED (see BlockExportDelWait). QEMU refuses with
// "export 'ID' still in use" while an NBD client is attached to the export
// (the default "safe" mode), so readers must disconnect first.
func (c *Client) BlockExportDel(ctx context.Context, id string) error {
	return c.Execute(ctx, "block-export-del", map[string]string{"id": id}, nil)
}

// BlockExportDelWait removes an export and waits for BLOCK_EXPORT_DELETED,
// after which its node can be deleted and the NBD server stopped.
func (c *Client) BlockExportDelWait(ctx context.Context, id string) error {
	w := c.Subscribe("BLOCK_EXPORT_DELETED", MatchData("id", id))
	defer w.Close()
	if err := c.BlockExportDel(ctx, id); err != nil {
		return err
	}
	_, err := w.Wait(ctx)
	return err
}

// BlockExportInfo describes an export (QAPI BlockExportInfo).
type BlockExportInfo struct {
	ID           string `json:"id"`
	Type         string `json:"type"`
	NodeName     string `json:"node-name"`
	ShuttingDown bool   `json:"shutting-down"`
}

// QueryBlockExports lists the exports, including those being removed.
func (c *Client) QueryBlockExports(ctx context.Context) ([]BlockExportInfo, error) {
	var exps []BlockExportInfo
	err := c.Execute(ctx, "query-block-exports", nil, &exps)
	return exps, err
}
