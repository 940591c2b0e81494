"""Files resolved by descriptors. This file is the program the platform starts on another
machine to serve a storage there, over the resource's SSH connection (``python3 -I -S``, the
standard library only, Python >= 3.6, its text sent on standard input): it serves file
requests one at a time on its standard input and output, for as long as the platform keeps
it.

Every path is resolved as rosetta.storage.local resolves it on this machine: from the storage
root's descriptor, one component at a time, with O_NOFOLLOW, never by path. A symbolic link
anywhere on the way — made by a task of the same account a moment before — is refused, never
followed. (SFTP cannot do this: it has no openat, so it resolves a path once to check it and
again to use it, and a task that swaps a folder for a link in between is let through.) This
machine's storages (rosetta.storage.local) use its walking, copying, removing and renaming
without replacing as well.

The root: the operator's part of the base path opened as given, each folder below it (the
user's own, made on first use) with O_NOFOLLOW; then it is refused if it is inside, is, or
holds one of the platform's own folders on the machine (task files, secrets, job scripts).

Frames, both ways: one byte of kind, four of length (big-endian), the payload.
  J  a JSON object: a request, or the one reply to it ({"error": kind, "message": ...} or not)
  D  file content: a read's from here, a write's from the platform
  E  the end of content
  A  the platform abandons a write: its temporary is removed
Names travel as UTF-8 (bytes that are not are carried as surrogate escapes), whatever the
machine's locale.
"""

import errno
import fcntl
import json
import os
import secrets
import stat
import struct
import sys

HEADER = struct.Struct(">cI")
CHUNK = 1024 * 1024  # bytes per frame of a file's content
UPLOAD_PREFIX = ".rosetta-upload-"  # as rosetta.storage.local: hidden from listings, never zipped
FILE_MODE, FOLDER_MODE, ROOT_MODE = 0o644, 0o755, 0o700
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Folders passed through (O_PATH): no read permission needed, as with a path (a cluster's
# /home may be 711).
_PATH = getattr(os, "O_PATH", os.O_RDONLY)
_THROUGH = _PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ANCHOR = _PATH | os.O_DIRECTORY | os.O_CLOEXEC  # the operator's path: followed as given


class Problem(Exception):
    """What the platform reports to the user: kind is nofile, refused, exists or full."""

    def __init__(self, kind, message):
        Exception.__init__(self, message)
        self.kind = kind


class Closed(Exception):
    """The platform closed the connection."""


# -- frames ------------------------------------------------------------------------------------


class Channel:
    def __init__(self, reader, out_fd):
        self.reader = reader
        self.out = out_fd

    def receive(self):
        header = self._exactly(HEADER.size)
        kind, length = HEADER.unpack(header)
        return kind, self._exactly(length) if length else b""

    def _exactly(self, size):
        data = self.reader.read(size)
        if data is None or len(data) < size:
            raise Closed()
        return data

    def send(self, kind, payload=b""):
        self._write_all([HEADER.pack(kind, len(payload)), payload] if payload else [HEADER.pack(kind, 0)])

    def reply(self, message):
        self.send(b"J", json.dumps(message).encode())

    def _write_all(self, parts):
        views = [memoryview(part) for part in parts]
        while views:
            written = os.writev(self.out, views)
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if views and written:
                views[0] = views[0][written:]


def as_text(name):
    """A name as it travels: text, whatever bytes it is made of."""
    return name.decode("utf-8", "surrogateescape")


def as_bytes(name):
    return name.encode("utf-8", "surrogateescape")


def component(name):
    """One name inside a folder, as bytes: never a path (the platform checks as well)."""
    raw = as_bytes(name)
    if raw in (b"", b".", b"..") or b"/" in raw or b"\0" in raw:
        raise Problem("refused", f"{name!r} is not a name Rosetta resolves.")
    return raw


def shown(path):
    return "/".join(path)


# -- resolution --------------------------------------------------------------------------------


def kind_of(mode):
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISLNK(mode):
        return "link"
    return "other"


def explain(error, fd, part, path):
    """Why ``part`` of ``path`` could not be opened, as rosetta.storage.local says it."""
    text = shown(path)
    if error.errno == errno.ENOENT:
        return Problem("nofile", f"There is no {text!r} in this storage.")
    try:
        if stat.S_ISLNK(os.stat(as_bytes(part), dir_fd=fd, follow_symlinks=False).st_mode):
            return Problem("refused", f"{text!r} is a symbolic link: Rosetta does not follow links.")
    except OSError:
        pass
    if error.errno in (errno.ENOTDIR, errno.ELOOP):
        return Problem("refused", f"{text!r} is not a folder.")
    if error.errno == errno.ENAMETOOLONG:
        return Problem("refused", f"{text!r} is too long a name.")
    return Problem("refused", f"{text!r}: {error.strerror}.")


def open_root(root):
    """The storage root's descriptor, checked against the platform's own folders."""
    anchor = as_bytes(root["anchor"])
    try:
        try:
            fd = os.open(anchor, _ANCHOR)
        except FileNotFoundError:
            if not root["create"]:
                raise Problem("nofile", "This storage's folder does not exist.") from None
            os.makedirs(anchor, ROOT_MODE, exist_ok=True)
            fd = os.open(anchor, _ANCHOR)
    except OSError as error:
        raise Problem("refused", f"This storage's folder cannot be opened: {error.strerror}.") from None
    try:
        for part in root["below"]:
            child = _open_below(fd, component(part), root["create"])
            os.close(fd)
            fd = child
        home = os.path.expanduser("~")  # work directories are given relative to it, or absolute
        guard(fd, [os.path.join(home, folder) for folder in root["platform"]] + own_settings(home))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_below(fd, name, create):
    for _ in range(2):
        try:
            return os.open(name, _THROUGH, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise Problem("nofile", "This storage's folder does not exist.") from None
            try:
                os.mkdir(name, ROOT_MODE, dir_fd=fd)
            except FileExistsError:
                pass  # made meanwhile: opened (and checked) the second time round
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                message = "This storage's folder is a symbolic link or not a folder: Rosetta does not follow it."
                raise Problem("refused", message) from None
            raise Problem("refused", f"This storage's folder cannot be opened: {error.strerror}.") from None
    raise Problem("refused", "This storage's folder keeps changing.")


def _identity(found):
    return found.st_dev, found.st_ino


def _ancestry(fd):
    """(device, inode) of the folder ``fd`` and of every folder above it, up to /."""
    found = [_identity(os.fstat(fd))]
    current = os.dup(fd)
    try:
        while True:
            parent = os.open("..", _THROUGH, dir_fd=current)
            os.close(current)
            current = parent
            identity = _identity(os.fstat(current))
            if identity == found[-1]:
                return found
            found.append(identity)
    finally:
        os.close(current)


def _nearest_existing(path):
    """The descriptor of ``path``'s deepest folder that exists (the platform's own path)."""
    while True:
        try:
            return os.open(path, _ANCHOR)
        except OSError:
            parent = os.path.dirname(path.rstrip("/")) or "/"
            if parent == path:
                raise
            path = parent


def own_settings(home):
    """The account's own settings: ~/.ssh and every hidden folder of its home (~/.config holds
    its podman settings, ~/.local its image store): a storage there would let users change what
    the account runs."""
    folders = [os.path.join(home, ".ssh")]
    try:
        names = os.listdir(home)
    except OSError:
        return folders
    for name in names:
        path = os.path.join(home, name)
        if name.startswith(".") and name not in (".", "..", ".ssh") and os.path.isdir(path):
            folders.append(path)
    return folders


def guard(fd, platform_dirs):
    """Refuse a root that is inside, is, or holds one of the given folders (the platform's own,
    the account's settings)."""
    above = None
    for folder in platform_dirs:
        if above is None:
            above = _ancestry(fd)
        try:
            inside = _identity(os.stat(folder)) in above
        except OSError:
            inside = False
        nearest = _nearest_existing(folder)
        try:
            holds = above[0] in _ancestry(nearest)
        finally:
            os.close(nearest)
        if inside or holds:
            where = "is inside" if inside else "holds"
            raise Problem("refused", f"This storage's folder {where} {folder}, one of the platform's own folders "
                                     "(task files, secrets) or the account's own settings on this machine: Rosetta "
                                     "does not serve it. An operator gives the storage or the resource's work "
                                     "directory another place.")  # fmt: skip


def open_dir(root_fd, path, readable=False):
    """A new descriptor of the folder ``path`` under the root (``readable``: to list it)."""
    fd = os.dup(root_fd)
    try:
        for index, part in enumerate(path):
            try:
                child = os.open(component(part), _THROUGH, dir_fd=fd)
            except OSError as error:
                raise explain(error, fd, part, path[: index + 1]) from None
            os.close(fd)
            fd = child
        if readable:
            try:
                child = os.open(".", _DIR, dir_fd=fd)
            except OSError as error:
                raise Problem("refused", f"{shown(path)!r} cannot be listed: {error.strerror}.") from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def lstat(fd, name, path):
    try:
        return os.stat(component(name), dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        raise Problem("nofile", f"There is no {shown(path)!r} in this storage.") from None


def exists(fd, name):
    try:
        os.stat(name if isinstance(name, bytes) else as_bytes(name), dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def entry(fd, name, found):
    kind = kind_of(found.st_mode)
    target = ""
    if kind == "link":
        try:
            target = as_text(os.readlink(as_bytes(name), dir_fd=fd))
        except OSError:
            pass
    return [name, kind, found.st_size if kind == "file" else 0, found.st_mtime, target]


def named(path):
    if not path:
        raise Problem("refused", "This needs a file or folder name, not the storage's root.")
    component(path[-1])
    return path[:-1], path[-1]


def taken(path):
    return Problem("exists", f"{shown(path)!r} already exists (send overwrite=true to replace it).")


def refused_os(error, what):
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return Problem("full", f"The storage is full: nothing was kept of this {what}.")
    if error.errno == errno.EEXIST:
        return Problem("exists", "It already exists.")
    if error.errno == errno.ENOENT:
        return Problem("nofile", "It is no longer there.")
    return Problem("refused", f"The storage refused the {what}: {error.strerror}.")


def link_without_replacing(folder, temporary, name):
    """Give a complete temporary its final name unless the name is taken (FileExistsError),
    even in the same instant: a hard link, then the temporary's removal (on file systems
    without hard links, renameat2's RENAME_NOREPLACE)."""
    try:
        os.link(temporary, name, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        rename_without_replacing(folder, temporary, folder, name)
        return
    os.unlink(temporary, dir_fd=folder)


_renameat2 = None


def rename_without_replacing(from_fd, name, to_fd, new_name):
    """Rename unless the new name is taken (FileExistsError): renameat2's RENAME_NOREPLACE
    where the C library, kernel and file system have it; else a rename after a last look (a
    name taken in that very instant would be replaced)."""
    global _renameat2
    if _renameat2 is None:
        _renameat2 = _load_renameat2()
    if _renameat2:
        import ctypes

        if _renameat2(from_fd, os.fsencode(name), to_fd, os.fsencode(new_name), 1) == 0:  # 1: RENAME_NOREPLACE
            return
        failed = ctypes.get_errno()
        if failed not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(failed, os.strerror(failed))
    if exists(to_fd, new_name):
        raise OSError(errno.EEXIST, os.strerror(errno.EEXIST))
    os.rename(name, new_name, src_dir_fd=from_fd, dst_dir_fd=to_fd)


def _load_renameat2():
    try:
        import ctypes

        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (ImportError, OSError, AttributeError):
        return False
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


# -- the operations ------------------------------------------------------------------------------


def listing(fd):
    """The entries of the folder ``fd``, by name."""
    entries = []
    for name in sorted(os.listdir(fd)):
        raw = os.fsencode(name)
        try:
            entries.append(entry(fd, as_text(raw), os.stat(raw, dir_fd=fd, follow_symlinks=False)))
        except FileNotFoundError:
            pass  # removed meanwhile
    return entries


def walk_tree(fd):
    """(path below ``fd``, entries) of its folder and of every folder under it, parents first,
    by name: by descriptors, without recursion (one descriptor per level of depth). A folder
    swapped for a link meanwhile is not followed."""
    folders = []  # (descriptor, path below fd, names of its folders still to visit, last first)
    try:
        found = listing(fd)
        yield (), found
        folders.append((os.dup(fd), (), _folder_names(found)))
        while folders:
            folder, below, pending = folders[-1]
            if not pending:
                folders.pop()
                os.close(folder)
                continue
            name = pending.pop()
            try:
                child = os.open(as_bytes(name), _DIR, dir_fd=folder)
            except OSError:
                continue  # removed, or swapped for a link: not followed
            folders.append((child, below + (name,), []))
            found = listing(child)
            folders[-1][2].extend(_folder_names(found))
            yield below + (name,), found
    finally:
        for folder, _, _ in folders:
            os.close(folder)


def _folder_names(entries):
    return [fields[0] for fields in reversed(entries) if fields[1] == "folder"]


def op_list(root_fd, request, channel):
    fd = open_dir(root_fd, request["path"], readable=True)
    try:
        channel.reply({"entries": listing(fd)})
    finally:
        os.close(fd)


def op_walk(root_fd, request, channel):
    """Every folder under ``path`` with its entries, a frame each, then the end."""
    fd = open_dir(root_fd, request["path"], readable=True)
    try:
        channel.reply({"walking": True})
        for below, entries in walk_tree(fd):
            channel.send(b"D", json.dumps([below, entries]).encode())
        channel.send(b"E")
    finally:
        os.close(fd)


def op_stat(root_fd, request, channel):
    path = request["path"]
    if not path:
        channel.reply({"entry": ["", "folder", 0, os.fstat(root_fd).st_mtime, ""]})
        return
    fd = open_dir(root_fd, path[:-1])
    try:
        channel.reply({"entry": entry(fd, path[-1], lstat(fd, path[-1], path))})
    finally:
        os.close(fd)


def op_read(root_fd, request, channel):
    """The file's entry as opened, then exactly the size it had then (a file that grows is
    cut there; one that shrinks is an error, never a quietly short file)."""
    path = request["path"]
    folder_path, name = named(path)
    parent = open_dir(root_fd, folder_path)
    try:
        try:
            fd = os.open(as_bytes(name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=parent)
        except OSError as error:
            raise explain(error, parent, name, path) from None
    finally:
        os.close(parent)
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            raise Problem("refused", f"{shown(path)!r} is not a file.")
        os.set_blocking(fd, True)
        channel.reply({"entry": [name, "file", found.st_size, found.st_mtime, ""]})
        left = found.st_size
        while left:
            chunk = os.read(fd, min(CHUNK, left))
            if not chunk:
                channel.reply({"error": "refused", "message": f"{shown(path)!r} shrank while it was read."})
                return
            channel.send(b"D", chunk)
            left -= len(chunk)
        channel.send(b"E")
    finally:
        os.close(fd)


def op_write(root_fd, request, channel):
    """Into a hidden temporary beside the file, then under its name: without replacing
    anything unless asked. One reply: an early refusal, or after the end (or abandon)."""
    path = request["path"]
    folder_path, name = named(path)
    folder = open_dir(root_fd, folder_path)
    temporary = None
    try:
        try:
            found = os.stat(as_bytes(name), dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            found = None
        if found is not None and stat.S_ISDIR(found.st_mode):
            raise Problem("exists", f"{shown(path)!r} is a folder.")
        if found is not None and not request["overwrite"]:
            raise taken(path)
        temporary = (UPLOAD_PREFIX + secrets.token_hex(8)).encode()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(temporary, flags, FILE_MODE, dir_fd=folder)
        except OSError as error:
            temporary = None
            raise refused_os(error, "upload") from None
        hold(fd)
        try:
            channel.reply({"ready": True})
            if not _receive_into(fd, channel, lambda: _unlink(folder, temporary)):
                temporary = None  # dropped before the reply
                return
            written = os.fstat(fd)
        finally:
            os.close(fd)
        if request["overwrite"]:
            os.rename(temporary, as_bytes(name), src_dir_fd=folder, dst_dir_fd=folder)
        else:
            try:
                link_without_replacing(folder, temporary, as_bytes(name))
            except FileExistsError:
                raise taken(path) from None
        temporary = None
        channel.reply({"entry": [name, "file", written.st_size, written.st_mtime, ""]})
    except OSError as error:
        raise refused_os(error, "upload") from None
    finally:
        if temporary is not None:
            _unlink(folder, temporary)
        os.close(folder)


def hold(fd):
    """Lock a temporary being written for as long as its descriptor is open: the kernel lets go
    when the writer dies, and whoever sweeps temporaries (rosetta.storage.sweep) leaves locked
    ones alone."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass  # a file system without locks: the sweep's age rule alone protects it


def _unlink(folder, name):
    try:
        os.unlink(name, dir_fd=folder)
    except OSError:
        pass


def _receive_into(fd, channel, drop):
    """Write what arrives until the end (True), or until the platform abandons the upload or
    a write is refused (False): then what was written is dropped before the one reply, and
    after a refusal what still comes is read and dropped, so that the frames stay in step."""
    while True:
        kind, data = channel.receive()
        if kind == b"E":
            return True
        if kind == b"A":
            drop()
            channel.reply({"abandoned": True})
            return False
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as error:
            drop()
            channel.reply(problem_reply(refused_os(error, "upload")))
            while channel.receive()[0] not in (b"E", b"A"):
                pass
            return False


def op_mkdir(root_fd, request, channel):
    path = request["path"]
    folder_path, name = named(path)
    fd = open_dir(root_fd, folder_path)
    try:
        os.mkdir(as_bytes(name), FOLDER_MODE, dir_fd=fd)
    except FileExistsError:
        raise Problem("exists", f"{shown(path)!r} already exists.") from None
    except OSError as error:
        raise refused_os(error, "folder") from None
    finally:
        os.close(fd)
    channel.reply({})


def _two(root_fd, request, verb):
    source, destination = request["source"], request["destination"]
    named(source), named(destination)
    if destination[: len(source)] == source:
        raise Problem("refused", f"A folder cannot be {verb} into itself.")
    from_fd = open_dir(root_fd, source[:-1])
    try:
        to_fd = open_dir(root_fd, destination[:-1])
    except BaseException:
        os.close(from_fd)
        raise
    try:
        lstat(from_fd, source[-1], source)
        if exists(to_fd, destination[-1]):
            raise Problem("exists", f"{shown(destination)!r} already exists.")
    except BaseException:
        os.close(from_fd)
        os.close(to_fd)
        raise
    return from_fd, to_fd


def op_move(root_fd, request, channel):
    from_fd, to_fd = _two(root_fd, request, "moved")
    try:
        rename_without_replacing(from_fd, as_bytes(request["source"][-1]), to_fd, as_bytes(request["destination"][-1]))
    except FileExistsError:
        raise Problem("exists", f"{shown(request['destination'])!r} already exists.") from None
    except OSError as error:
        raise refused_os(error, "move") from None
    finally:
        os.close(from_fd)
        os.close(to_fd)
    channel.reply({})


def op_copy(root_fd, request, channel):
    from_fd, to_fd = _two(root_fd, request, "copied")
    try:
        copy_tree(from_fd, request["source"][-1], to_fd, request["destination"][-1])
    except OSError as error:
        raise refused_os(error, "copy") from None
    finally:
        os.close(from_fd)
        os.close(to_fd)
    channel.reply({})


def copy_tree(from_fd, name, to_fd, new_name, made=None):
    """Copy by descriptors, without recursion (two descriptors per level of depth): links as
    links, never followed; devices, sockets and fifos are not copied. ``made(folder, name)``
    is told of everything created."""
    stack = [(os.dup(from_fd), os.dup(to_fd), [(as_bytes(name), as_bytes(new_name))])]  # (from, to, names left)
    try:
        while stack:
            source, target, names = stack[-1]
            if not names:
                stack.pop()
                os.close(source)
                os.close(target)
                continue
            item, new_item = names.pop()
            mode = os.stat(item, dir_fd=source, follow_symlinks=False).st_mode
            if stat.S_ISLNK(mode):
                os.symlink(os.readlink(item, dir_fd=source), new_item, dir_fd=target)
            elif stat.S_ISREG(mode):
                copy_file(source, item, target, new_item)
            elif stat.S_ISDIR(mode):
                os.mkdir(new_item, FOLDER_MODE, dir_fd=target)
            else:
                continue
            if made is not None:
                made(target, new_item)
            if stat.S_ISDIR(mode):
                inner = os.open(item, _DIR, dir_fd=source)
                try:
                    inner_target = os.open(new_item, _DIR, dir_fd=target)
                except BaseException:
                    os.close(inner)
                    raise
                stack.append((inner, inner_target, [(os.fsencode(child),) * 2 for child in os.listdir(inner)]))
    finally:
        for source, target, _ in stack:
            os.close(source)
            os.close(target)


def copy_file(source_dir, name, target_dir, new_name):
    source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=source_dir)
    temporary = (UPLOAD_PREFIX + secrets.token_hex(8)).encode()
    try:
        if not stat.S_ISREG(os.fstat(source).st_mode):
            return  # swapped for something else meanwhile: not copied
        os.set_blocking(source, True)
        target = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         FILE_MODE, dir_fd=target_dir)  # fmt: skip
        hold(target)
        try:
            left = os.fstat(source).st_size
            while left > 0:
                sent = _copy_some(source, target, min(left, 1 << 30))
                if not sent:
                    break
                left -= sent
        finally:
            os.close(target)
        link_without_replacing(target_dir, temporary, new_name)
    finally:
        try:
            os.unlink(temporary, dir_fd=target_dir)
        except OSError:
            pass
        os.close(source)


def _copy_some(source, target, size):
    if hasattr(os, "copy_file_range"):  # Python >= 3.8
        try:
            return os.copy_file_range(source, target, size)
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
    chunk = os.read(source, min(size, CHUNK))
    view = memoryview(chunk)
    while view:
        view = view[os.write(target, view) :]
    return len(chunk)


def op_remove(root_fd, request, channel):
    path = request["path"]
    folder_path, name = named(path)
    fd = open_dir(root_fd, folder_path)
    try:
        found = lstat(fd, name, path)
        if stat.S_ISDIR(found.st_mode):
            remove_tree(fd, as_bytes(name))
        else:
            os.unlink(as_bytes(name), dir_fd=fd)
    except OSError as error:
        raise refused_os(error, "removal") from None
    finally:
        os.close(fd)
    channel.reply({})


def remove_tree(parent, name):
    """Remove a folder and all it holds, by descriptors, without recursion (one descriptor
    per level of depth): a link inside is removed, never followed, and a folder swapped for a
    link meanwhile is refused (O_NOFOLLOW)."""
    stack = [(os.dup(parent), None, [name])]  # (folder, its name in the one above, its folders left)
    try:
        while stack:
            fd, item, folders = stack[-1]
            if folders:
                child = folders.pop()
                inner = os.open(child, _DIR, dir_fd=fd)
                stack.append((inner, child, []))
                stack[-1][2].extend(_unlink_all_but_folders(inner))
                continue
            stack.pop()
            os.close(fd)
            if stack:
                os.rmdir(item, dir_fd=stack[-1][0])
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def _unlink_all_but_folders(fd):
    """Unlink everything in the folder but folders; the names of those."""
    folders = []
    for name in os.listdir(fd):
        raw = os.fsencode(name)
        try:
            if stat.S_ISDIR(os.stat(raw, dir_fd=fd, follow_symlinks=False).st_mode):
                folders.append(raw)
            else:
                os.unlink(raw, dir_fd=fd)
        except FileNotFoundError:
            pass  # removed meanwhile
    return folders


OPERATIONS = {
    "list": op_list,
    "walk": op_walk,
    "stat": op_stat,
    "read": op_read,
    "write": op_write,
    "mkdir": op_mkdir,
    "move": op_move,
    "copy": op_copy,
    "remove": op_remove,
}


def problem_reply(problem):
    return {"error": problem.kind, "message": str(problem)}


def serve(channel):
    channel.reply({"hello": 1, "python": ".".join(str(part) for part in sys.version_info[:2])})
    while True:
        kind, payload = channel.receive()
        if kind != b"J":
            continue  # what is left of an abandoned exchange
        request = json.loads(payload.decode())
        try:
            operation = OPERATIONS.get(request.get("op"))
            if operation is None:
                raise Problem("refused", f"This helper does not know {request.get('op')!r}.")
            root_fd = open_root(request["root"])
            try:
                operation(root_fd, request, channel)
            finally:
                os.close(root_fd)
        except Problem as problem:
            channel.reply(problem_reply(problem))
        except OSError as error:
            channel.reply({"error": "refused", "message": f"The storage refused: {error.strerror}."})


def more_descriptors():
    """Deep folders are copied and removed a descriptor per level: allow as many as may be."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def main():
    more_descriptors()
    reader = sys.stdin.buffer
    try:
        serve(Channel(reader, sys.stdout.fileno()))
    except (Closed, BrokenPipeError):
        pass


if __name__ == "__main__":
    main()
