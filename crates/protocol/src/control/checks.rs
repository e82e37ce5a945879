//! Whether the control folder and config.json of a run may steer it: no
//! other user can write them, swap them, or read the commands.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::request::spool_dir;
use crate::error::{Error, Result};

/// Whether group `gid` is `uid`'s own, proved from /etc/passwd and
/// /etc/group: the user's primary group, of the user's name, and no other
/// user has it as primary group or is listed in it (the "user private
/// group" of many Linux systems, which makes folders group-writable with
/// umask 002). Anything not found there (a directory service's groups)
/// counts as not private.
fn private_group(gid: u32, uid: u32) -> bool {
    let (Ok(passwd), Ok(group)) = (
        fs::read_to_string("/etc/passwd"),
        fs::read_to_string("/etc/group"),
    ) else {
        return false;
    };
    let fields = |line: &str| line.split(':').map(str::to_owned).collect::<Vec<_>>();
    let id = |field: Option<&String>| field.and_then(|f| f.parse::<u32>().ok());
    let users: Vec<Vec<String>> = passwd.lines().map(fields).collect();
    let Some(me) = users.iter().find(|u| id(u.get(2)) == Some(uid)) else {
        return false;
    };
    let name = &me[0];
    let own_primary = id(me.get(3)) == Some(gid);
    let others_primary = users
        .iter()
        .any(|u| id(u.get(3)) == Some(gid) && id(u.get(2)) != Some(uid));
    let entry = group
        .lines()
        .map(fields)
        .find(|g| id(g.get(2)) == Some(gid));
    let Some(entry) = entry else {
        return false;
    };
    let members_only_me = entry
        .get(3)
        .is_none_or(|m| m.split(',').filter(|x| !x.is_empty()).all(|x| x == name));
    own_primary && !others_primary && &entry[0] == name && members_only_me
}

/// Checks that `RUN_DIR/control`, where commands arrive, is safe to serve:
/// a real folder (not a link) of this process's user that no other user
/// can open (mode 0700), or not there yet; and that no other user can swap
/// it: the run directory and every folder above it belong to this user or
/// to root and are not writable by others (unless sticky, as /tmp; a group
/// of this user's own may write).
/// Anything else is refused before the run writes a file.
pub fn check_spool(run_dir: &Path) -> Result<()> {
    let dir = spool_dir(run_dir);
    check_spool_as(
        run_dir,
        &format!("pick another --run-dir, or move {} away", dir.display()),
    )
}

/// [`check_spool`], its refusals ending with `advice`.
pub(super) fn check_spool_as(run_dir: &Path, advice: &str) -> Result<()> {
    let (uid, gid) = crate::process::effective_ids()?;
    let dir = spool_dir(run_dir);
    let refuse = |why: String| {
        Err(Error::Usage(format!(
            "{}: {why}; the control folder of a run is made by trainui (mode 0700, \
             owned by the user who runs it): {advice}",
            dir.display(),
        )))
    };
    match fs::symlink_metadata(&dir) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(Error::io("cannot read the control folder", &dir)(err)),
        Ok(meta) if meta.file_type().is_symlink() => {
            return refuse("is a symbolic link, not a folder of this run".into());
        }
        Ok(meta) if !meta.is_dir() => return refuse("is not a folder".into()),
        Ok(meta) if meta.uid() != uid => {
            return refuse(format!(
                "belongs to user {}, not to you ({uid})",
                meta.uid()
            ));
        }
        Ok(meta) if meta.mode() & 0o077 != 0 => {
            return refuse(format!(
                "has mode {:o}: other users can use it",
                meta.mode() & 0o777
            ));
        }
        Ok(_) => {}
    }
    // Every folder above it that exists, as written (links included) and
    // as they resolve: no other user may be able to swap any of them.
    let absolute = std::path::absolute(run_dir).map_err(Error::io("cannot resolve", run_dir))?;
    let start = absolute
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let real = fs::canonicalize(start).map_err(Error::io("cannot resolve", start))?;
    for folder in start.ancestors().chain(real.ancestors()) {
        let meta = fs::metadata(folder).map_err(Error::io("cannot read", folder))?;
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.uid() != uid && meta.uid() != 0 {
            return Err(Error::Usage(format!(
                "{}: belongs to user {}, who could replace {}; run in a folder of your own",
                folder.display(),
                meta.uid(),
                dir.display()
            )));
        }
        let group_can_write =
            meta.mode() & 0o020 != 0 && !(meta.gid() == gid && private_group(gid, uid));
        if (meta.mode() & 0o002 != 0 || group_can_write) && !sticky {
            return Err(Error::Usage(format!(
                "{}: other users can write to it (mode {:o}) and so replace {}; run in a \
                 folder only you can write to (chmod go-w {})",
                folder.display(),
                meta.mode() & 0o777,
                dir.display(),
                folder.display()
            )));
        }
    }
    Ok(())
}

/// Whether a run's config.json may steer it (a live edit, or the settings
/// a run is started again with): a regular file (not a link) of this
/// process's user that no other user can write, in a run directory that
/// passed [`check_spool`] (so nobody else can swap it).
pub fn owned_by_me_alone(path: &Path) -> Result<()> {
    let (uid, _) = crate::process::effective_ids()?;
    let meta = fs::symlink_metadata(path).map_err(Error::io("cannot read", path))?;
    let why = if meta.file_type().is_symlink() {
        "it is a symbolic link".to_owned()
    } else if !meta.is_file() {
        "it is not a regular file".to_owned()
    } else if meta.uid() != uid {
        format!("it belongs to user {}, not to you ({uid})", meta.uid())
    } else if meta.mode() & 0o022 != 0 {
        format!(
            "other users can write to it (mode {:o})",
            meta.mode() & 0o777
        )
    } else {
        return Ok(());
    };
    Err(Error::Usage(format!(
        "{}: refused: {why}; a run takes settings from a file only its owner can write \
         (chmod go-w {}), or from trainui ctl RUN_DIR set KEY=VALUE",
        path.display(),
        path.display()
    )))
}
