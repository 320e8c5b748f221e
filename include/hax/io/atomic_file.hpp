// SPDX-License-Identifier: MIT
/// \file
/// Atomic file replacement (POSIX): bytes go to a temporary file in the destination's directory,
/// which is flushed (fsync) and then renamed over the destination, and the directory is synced.
/// Readers see either the old file or the complete new one, never a half-written file. On any
/// failure (open, short write / ENOSPC / EFBIG, fsync, close, rename) the temporary is removed and
/// hax::io_error names the destination and the reason; the destination is left untouched.
///
/// Generic: any hax file writer (checkpoints, safetensors, the datasets of hax::data, results) can
/// use it. Host only.
#pragma once

#include <hax/core/error.hpp>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <unistd.h>

namespace hax::io {

/// Writes a file atomically. Usage:
///
///     AtomicFileWriter out(path);   // creates "<dir>/.<name>.tmp.XXXXXX"
///     out.write(bytes); ...          // any number of writes (short writes are retried)
///     out.commit();                  // fsync, close, rename over `path`, fsync the directory
///
/// If commit() is not reached (an exception, an early return), the destructor removes the
/// temporary. Every failure throws hax::io_error("hax::io::AtomicFileWriter: cannot write
/// \"<path>\": <reason>") after removing the temporary.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::filesystem::path path) : path_(std::move(path)) {
    require_io(!path_.empty() && path_.has_filename(), "the path is empty or names a directory");
    std::filesystem::path const dir = path_.parent_path().empty() ? "." : path_.parent_path();
    std::string pattern = (dir / ("." + path_.filename().string() + ".tmp.XXXXXX")).string();
    // mkstemp creates the file exclusively (O_EXCL) with a unique name, so concurrent writers of
    // the same destination never share a temporary.
    fd_ = ::mkstemp(pattern.data());
    if (fd_ < 0) {
      fail_errno("cannot create a temporary file in \"" + dir.string() + "\"");
    }
    temp_ = pattern;
    // mkstemp creates files with mode 0600; results and checkpoints are ordinary shared files.
    // (Reading the umask would mean setting it, which races with other threads creating files.)
    ::fchmod(fd_, 0644);
  }

  AtomicFileWriter(AtomicFileWriter const&) = delete;
  AtomicFileWriter& operator=(AtomicFileWriter const&) = delete;

  ~AtomicFileWriter() { discard(); }

  /// Appends `bytes`. A write that stores fewer bytes than asked (a full disk, a file-size limit)
  /// is retried for the rest; the retry then reports the error (ENOSPC, EFBIG), which is thrown.
  void write(std::span<std::byte const> bytes) {
    require_io(fd_ >= 0, "write after commit or failure");
    std::byte const* p = bytes.data();
    std::size_t left = bytes.size();
    while (left > 0) {
      ssize_t const n = ::write(fd_, p, left);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        fail_errno("write failed after " + std::to_string(written_) + " bytes");
      }
      if (n == 0) {
        fail("write stored 0 bytes after " + std::to_string(written_) + " bytes");
      }
      p += n;
      left -= static_cast<std::size_t>(n);
      written_ += static_cast<std::size_t>(n);
    }
  }

  /// Bytes written so far.
  [[nodiscard]] std::size_t size() const { return written_; }

  /// The temporary file's path (empty once committed or discarded).
  [[nodiscard]] std::filesystem::path const& temporary_path() const { return temp_; }

  /// Flushes the temporary to disk, renames it over the destination and syncs the directory so
  /// the rename itself survives a crash. After commit() the writer is spent.
  void commit() {
    require_io(fd_ >= 0, "commit after commit or failure");
    if (::fsync(fd_) != 0) {
      fail_errno("fsync failed");
    }
    int const fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) {  // NFS and some filesystems report deferred write errors here
      fail_errno("close failed");
    }
    if (::rename(temp_.c_str(), path_.c_str()) != 0) {
      fail_errno("cannot rename the temporary over the destination");
    }
    temp_.clear();
    std::filesystem::path const dir = path_.parent_path().empty() ? "." : path_.parent_path();
    int const dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      // The new file is complete and in place; a directory that cannot be synced (some
      // filesystems refuse fsync on directories with EINVAL) only weakens crash durability.
      ::fsync(dfd);
      ::close(dfd);
    }
  }

  /// Closes and removes the temporary, if any (idempotent; never throws).
  void discard() noexcept {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    if (!temp_.empty()) {
      ::unlink(temp_.c_str());
      temp_.clear();
    }
  }

 private:
  [[noreturn]] void fail(std::string const& reason) {
    discard();
    throw io_error(core::concat("hax::io::AtomicFileWriter: cannot write \"", path_.string(),
                                "\": ", reason));
  }
  [[noreturn]] void fail_errno(std::string const& what) {
    int const err = errno;  // read before discard() may change it
    fail(what + " (" + std::strerror(err) + ")");
  }
  void require_io(bool ok, std::string const& reason) {
    if (!ok) {
      fail(reason);
    }
  }

  std::filesystem::path path_;  // destination
  std::filesystem::path temp_;  // temporary in the same directory (same filesystem: rename is atomic)
  int fd_ = -1;                 // open descriptor of the temporary, -1 once closed
  std::size_t written_ = 0;     // bytes written to the temporary
};

/// Replaces `path` atomically with `bytes` (see AtomicFileWriter).
inline void write_file_atomically(std::filesystem::path const& path,
                                  std::span<std::byte const> bytes) {
  AtomicFileWriter out(path);
  out.write(bytes);
  out.commit();
}

}  // namespace hax::io
