// Package qmp is a small client for QEMU's machine protocol (QMP): the
// JSON-over-unix-socket monitor that drctl uses to snapshot running VMs
// (fleecing backups, dirty bitmaps, NBD exports).
//
// It is written for drctl's needs rather than taken from a library: drctl
// wants typed replies, several commands in flight at once and race-free
// event waiting, and no dependencies.
//
// A session looks like this:
//
//	c, err := qmp.Dial(ctx, "/run/vm1/qmp.sock")
//	if err != nil { ... }
//	defer c.Close()
//	nodes, err := c.QueryNamedBlockNodes(ctx)
//	...
//	// Subscribe before the command that causes the event, so that an event
//	// QEMU sends before (or right after) the reply cannot be missed.
//	w := c.Subscribe("BLOCK_EXPORT_DELETED", qmp.MatchData("id", "exp0"))
//	defer w.Close()
//	err = c.BlockExportDel(ctx, "exp0")
//	ev, err := w.Wait(ctx)
//
// Behaviour of QEMU 7.2 worth knowing:
//   - a QMP socket serves one client at a time; a second client's connect
//     succeeds but QEMU sends it nothing until the first disconnects, so
//     Dial gives up on a missing greeting after a timeout;
//   - events can precede the reply of the command that caused them (quit
//     sends SHUTDOWN first), hence Subscribe;
//   - block-export-del and block-job-cancel only start the work: wait for
//     BLOCK_EXPORT_DELETED and BLOCK_JOB_CANCELLED (BlockExportDelWait,
//     BlockJobCancelWait);
//   - human-monitor-command reports HMP errors as text in its reply, not as
//     a QMP error, and "qemu-io" prints its output to QEMU's stdout.
package qmp
