//! Image references, normalized as Docker, containerd and Kubernetes do.
//!
//! The grammar is the one of the distribution `reference` package:
//! `[registry/]path[:tag][@digest]`. The first `/`-separated component is a
//! registry only when it contains `.` or `:`, is `localhost`, or has an
//! uppercase letter; otherwise the registry is `docker.io`, and a one-part
//! path on `docker.io` gets the `library/` prefix. Normalization (containerd's
//! `ParseDockerRef`, what the kubelet hands to the runtime) then adds `:latest`
//! when neither a tag nor a digest is given, and drops the tag when a digest
//! is given.

use super::ImageError;
use std::fmt;

/// The default registry.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The repository prefix for official images on the default registry.
const OFFICIAL_PREFIX: &str = "library/";
/// The longest repository name (registry included) allowed.
const NAME_MAX: usize = 255;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The registry host (and port): `docker.io`, `localhost:5000`.
    pub registry: String,
    /// The repository path inside the registry: `library/busybox`.
    pub repository: String,
    /// The tag, if one was given.
    pub tag: Option<String>,
    /// The digest (`sha256:…`), if one was given.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses a reference the way `ParseNormalizedNamed` does; errors read like
    /// the kubelet's (`couldn't parse image name "X": invalid reference format`).
    pub fn parse(reference: &str) -> Result<Reference, ImageError> {
        parse_inner(reference).map_err(|reason| {
            ImageError::Invalid(format!("couldn't parse image name {reference:?}: {reason}"))
        })
    }

    /// The repository name with its registry: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The normalized form: `:latest` added when there is neither tag nor
    /// digest, the tag dropped when there is a digest.
    pub fn normalized(&self) -> String {
        match (&self.tag, &self.digest) {
            (_, Some(digest)) => format!("{}@{digest}", self.name()),
            (Some(tag), None) => format!("{}:{tag}", self.name()),
            (None, None) => format!("{}:latest", self.name()),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Normalizes a reference: `busybox` → `docker.io/library/busybox:latest`.
///
/// A reference that does not parse is returned unchanged; use
/// [`try_normalize`] to see the error.
pub fn normalize(reference: &str) -> String {
    try_normalize(reference).unwrap_or_else(|_| reference.to_string())
}

/// Normalizes a reference, or says why it is invalid.
pub fn try_normalize(reference: &str) -> Result<String, ImageError> {
    Reference::parse(reference).map(|r| r.normalized())
}

const INVALID_FORMAT: &str = "invalid reference format";

fn parse_inner(s: &str) -> Result<Reference, String> {
    if s.len() == 64 && s.bytes().all(is_lower_hex) {
        return Err(format!(
            "invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        ));
    }
    // Registry: the part before the first '/', when it looks like a host.
    let (mut registry, mut remainder) = match s.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_REGISTRY.to_string(), s.to_string()),
    };
    if registry == "index.docker.io" {
        registry = DEFAULT_REGISTRY.to_string();
    }
    if registry == DEFAULT_REGISTRY && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_PREFIX}{remainder}");
    }
    let remote_name = remainder.split(':').next().unwrap_or_default();
    if remote_name.to_lowercase() != remote_name {
        return Err(format!(
            "{INVALID_FORMAT}: repository name ({remote_name}) must be lowercase"
        ));
    }

    // `remainder` is path[:tag][@digest].
    let (name_tag, digest) = match remainder.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (remainder.as_str(), None),
    };
    let (repository, tag) = match name_tag.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (name_tag, None),
    };
    if !valid_registry(&registry) || !valid_path(repository) {
        return Err(INVALID_FORMAT.to_string());
    }
    if let Some(tag) = tag
        && !valid_tag(tag)
    {
        return Err(INVALID_FORMAT.to_string());
    }
    if let Some(digest) = digest {
        validate_digest(digest)?;
    }
    if registry.len() + 1 + repository.len() > NAME_MAX {
        return Err(format!(
            "repository name must not be more than {NAME_MAX} characters"
        ));
    }
    Ok(Reference {
        registry,
        repository: repository.to_string(),
        tag: tag.map(str::to_string),
        digest: digest.map(str::to_string),
    })
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// `host[:port]`: dot-separated components of alphanumerics and inner dashes,
/// or a bracketed IPv6 address.
fn valid_registry(registry: &str) -> bool {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("x", Some(port)),
                None => return false,
            },
        }
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (registry, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    host.split('.').all(|c| {
        !c.is_empty()
            && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !c.starts_with('-')
            && !c.ends_with('-')
    })
}

/// Path components of lowercase alphanumerics joined by `.`, `_`, `__` or
/// runs of `-`.
fn valid_path(path: &str) -> bool {
    path.split('/').all(valid_path_component)
}

fn valid_path_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    while i < bytes.len() {
        // A run of alphanumerics.
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        // A separator.
        let sep_start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[sep_start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok || i == bytes.len() {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

fn validate_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return Err(INVALID_FORMAT.to_string());
    };
    let algorithm_ok = !algorithm.is_empty()
        && algorithm
            .split(['+', '.', '_', '-'])
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !algorithm_ok || encoded.len() < 32 || !encoded.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(INVALID_FORMAT.to_string());
    }
    let want = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm".to_string()),
    };
    if encoded.len() != want || !encoded.bytes().all(is_lower_hex) {
        return Err("invalid checksum digest length".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalize_table() {
        let dig = |s: &str| s.replace("@D", &format!("@{D}"));
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:latest",
            ),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("index.docker.io/user/app:v1", "docker.io/user/app:v1"),
            ("user/app", "docker.io/user/app:latest"),
            ("user/app:1.0", "docker.io/user/app:1.0"),
            ("user/team/app", "docker.io/user/team/app:latest"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/app:1", "localhost:5000/app:1"),
            ("localhost:5000", "docker.io/library/localhost:5000"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("quay.io/coreos/etcd", "quay.io/coreos/etcd:latest"),
            ("myhost:5000/a/b/c", "myhost:5000/a/b/c:latest"),
            ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest"),
            ("[::1]:5000/app:v2", "[::1]:5000/app:v2"),
            ("busybox@D", "docker.io/library/busybox@D"),
            ("busybox:1.36@D", "docker.io/library/busybox@D"),
            ("gcr.io/x/y@D", "gcr.io/x/y@D"),
            ("a.b-c/d__e.f-g---h_i", "a.b-c/d__e.f-g---h_i:latest"),
            (
                "busybox:Latest_1.x-y",
                "docker.io/library/busybox:Latest_1.x-y",
            ),
        ];
        for (input, want) in cases {
            let input = dig(input);
            assert_eq!(try_normalize(&input).unwrap(), dig(want), "{input}");
            assert_eq!(normalize(&input), dig(want), "{input}");
        }
    }

    #[test]
    fn invalid_references() {
        let cases = [
            ("", "invalid reference format"),
            (
                "Busybox",
                "repository name (library/Busybox) must be lowercase",
            ),
            ("user/App", "repository name (user/App) must be lowercase"),
            ("busybox:", "invalid reference format"),
            ("busybox:-x", "invalid reference format"),
            ("busy box", "invalid reference format"),
            ("busybox::1", "invalid reference format"),
            ("-busybox", "invalid reference format"),
            ("busybox-", "invalid reference format"),
            ("a//b", "invalid reference format"),
            ("a/b/", "invalid reference format"),
            ("a___b", "invalid reference format"),
            ("a.-b", "invalid reference format"),
            ("ko://github.com/x", "invalid reference format"),
            ("host:port/app", "invalid reference format"),
            ("busybox@sha256:abc", "invalid reference format"),
            (
                "busybox@md5:d41d8cd98f00b204e9800998ecf8427e",
                "unsupported digest algorithm",
            ),
            (
                "busybox@sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                "invalid checksum digest length",
            ),
            (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "cannot specify 64-byte hexadecimal strings",
            ),
        ];
        for (input, want) in cases {
            let err = Reference::parse(input).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("couldn't parse image name {input:?}: ")),
                "{input}: {err}"
            );
            assert!(err.contains(want), "{input}: {err}");
            assert_eq!(normalize(input), input);
        }
        let long = format!("a/{}", "b".repeat(260));
        assert!(
            Reference::parse(&long)
                .unwrap_err()
                .to_string()
                .contains("must not be more than 255 characters")
        );
        let tag = format!("a:{}", "t".repeat(129));
        assert!(Reference::parse(&tag).is_err());
    }

    #[test]
    fn parts_and_display() {
        let r = Reference::parse(&format!("localhost:5000/team/app:1.2@{D}")).unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("1.2"));
        assert_eq!(r.digest.as_deref(), Some(D));
        assert_eq!(r.to_string(), format!("localhost:5000/team/app:1.2@{D}"));
        assert_eq!(r.name(), "localhost:5000/team/app");
        let r: Reference = "busybox".parse().unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox");
        assert_eq!(r.tag, None);
        assert_eq!(r.normalized(), "docker.io/library/busybox:latest");
    }
}
