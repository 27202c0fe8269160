//! What the tests against real runc share: cleaning up after a runtime.

use std::path::Path;
use std::time::Duration;

/// Removes what a test runtime rooted at `root` made, even after a panic:
/// its containers (`runc delete --force`) and their rootfs mounts, its
/// sandboxes' namespace mounts, and the cgroups under `/<cgroup_root>/pod`.
pub fn clean_up(root: &Path, cgroup_root: &str) {
    let runc_root = root.join("runc");
    if let Ok(entries) = std::fs::read_dir(root.join("containers")) {
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().to_string();
            let _ = std::process::Command::new("runc")
                .arg("--root")
                .arg(&runc_root)
                .args(["delete", "--force", &id])
                .output();
            let _ = nix::mount::umount2(&e.path().join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
        }
    }
    if let Ok(entries) = std::fs::read_dir(root.join("sandboxes")) {
        for e in entries.flatten() {
            let ns = e.path().join("ns");
            for n in ["net", "ipc", "uts"] {
                let _ = nix::mount::umount2(&ns.join(n), nix::mount::MntFlags::MNT_DETACH);
            }
            let _ = nix::mount::umount2(&ns, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    // Give the shims a moment to finish their own `runc delete`, then drop the cgroups.
    std::thread::sleep(Duration::from_millis(200));
    if let Ok(subsystems) = std::fs::read_dir("/sys/fs/cgroup") {
        for s in subsystems.flatten() {
            let top = s.path().join(cgroup_root);
            if let Ok(cs) = std::fs::read_dir(top.join("pod")) {
                for c in cs.flatten().filter(|c| c.path().is_dir()) {
                    let _ = std::fs::remove_dir(c.path());
                }
            }
            let _ = std::fs::remove_dir(top.join("pod"));
            let _ = std::fs::remove_dir(&top);
        }
    }
}
