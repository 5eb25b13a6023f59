//! TLS for the API and peer ports (rustls), and the certificates `raftline certs init` makes.
//!
//! Peers use mutual TLS: the peer port accepts a connection only from a certificate the
//! cluster CA signed, so a process without one can't vote, append or forward; and a node
//! checks the peer it calls against the same CA. The API port checks no client certificate
//! (clients present tokens); clients check the node against the CA.
//!
//! The configurations sit behind a lock and every new connection takes the current one, so
//! [`NodeTls::reload`] (on SIGHUP) swaps certificates without a restart; connections already
//! open keep theirs.
//!
//! We accept TLS ourselves (tokio-rustls) instead of through tonic's `ServerTlsConfig`, because
//! that one is fixed when the server starts, so reload would need a restart; and each handshake
//! runs in its own task under a deadline, so a client that stalls mid-handshake holds no one up.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::config::TlsPaths;
use crate::error::{Error, Result};

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest PEM file read (a certificate chain or a key).
const PEM_FILE_BYTES_MAX: u64 = 1 << 20;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem(what: &str, path: &Path) -> Result<Vec<u8>> {
    let fail = |m: String| Error::Config(format!("tls: {what} {}: {m}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    if meta.len() > PEM_FILE_BYTES_MAX {
        return Err(fail(format!(
            "is {} bytes, more than a PEM file holds",
            meta.len()
        )));
    }
    std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))
}

/// Certificates in a PEM file (at least one).
pub fn load_certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read_pem(what, path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| {
            Error::Config(format!(
                "tls: {what} {}: not PEM certificates: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "tls: {what} {}: holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = read_pem("key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        Error::Config(format!(
            "tls: key {}: not a PEM private key: {e}",
            path.display()
        ))
    })
}

fn roots(ca_file: &Path) -> Result<Arc<rustls::RootCertStore>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs("ca_file", ca_file)? {
        roots.add(cert).map_err(|e| {
            Error::Config(format!(
                "tls: ca_file {}: not a usable CA certificate: {e}",
                ca_file.display()
            ))
        })?;
    }
    Ok(Arc::new(roots))
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("tls: {what}: {e}"))
}

/// A client configuration that trusts `ca_file`, presenting `identity` (chain and key files)
/// when given.
pub fn client_config(
    ca_file: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("client", e))?
        .with_root_certificates(roots(ca_file)?);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs("cert_file", cert)?, load_key(key)?)
            .map_err(|e| tls_error("cert_file and key_file do not go together", e))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn server_config(paths: &TlsPaths, id: u64, mutual: bool) -> Result<Arc<rustls::ServerConfig>> {
    let (cert, key) = paths.node_files(id);
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("server", e))?;
    let builder = if mutual {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots(&paths.ca_file)?,
            provider(),
        )
        .build()
        .map_err(|e| tls_error("ca_file", e))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(load_certs("cert_file", &cert)?, load_key(&key)?)
        .map_err(|e| tls_error("cert_file and key_file do not go together", e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

struct Configs {
    peer_server: Arc<rustls::ServerConfig>,
    api_server: Arc<rustls::ServerConfig>,
    http_server: Arc<rustls::ServerConfig>,
    peer_client: Arc<rustls::ClientConfig>,
}

/// Which of a node's ports a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Raft and forwarding: mutual TLS, HTTP/2.
    Peer,
    /// The gRPC API: TLS, HTTP/2.
    Api,
    /// `/health` and `/metrics`: TLS, HTTP/1.1 or HTTP/2.
    Http,
}

/// Refuses a node certificate the cluster's CA would not accept now: expired, not yet valid,
/// or not signed by it (a certificate that names other hosts is the operator's choice).
fn check_node_cert(paths: &TlsPaths, id: u64) -> Result<()> {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
    let (cert, _) = paths.node_files(id);
    let chain = load_certs("cert_file", &cert)?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        roots(&paths.ca_file)?,
        provider(),
    )
    .build()
    .map_err(|e| tls_error("ca_file", e))?;
    let name = ServerName::try_from(format!("node-{id}")).map_err(|e| tls_error("node name", e))?;
    let now = rustls_pki_types::UnixTime::now();
    match verifier.verify_server_cert(&chain[0], &chain[1..], &name, &[], now) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InvalidCertificate(NotValidForName | NotValidForNameContext { .. })) => {
            Ok(())
        }
        Err(e) => {
            let why = match e {
                rustls::Error::InvalidCertificate(c) => c.to_string(),
                other => other.to_string(),
            };
            Err(Error::Config(format!(
                "tls: cert_file {}: {why} (checked against ca_file {})",
                cert.display(),
                paths.ca_file.display()
            )))
        }
    }
}

fn load(paths: &TlsPaths, id: u64) -> Result<Configs> {
    let (cert, key) = paths.node_files(id);
    check_node_cert(paths, id)?;
    let api_server = server_config(paths, id, false)?;
    let mut http_server = (*api_server).clone();
    http_server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Configs {
        peer_server: server_config(paths, id, true)?,
        api_server,
        http_server: Arc::new(http_server),
        peer_client: client_config(&paths.ca_file, Some((&cert, &key)))?,
    })
}

/// One node's TLS configurations, reloadable.
pub struct NodeTls {
    paths: TlsPaths,
    id: u64,
    current: RwLock<Configs>,
}

impl NodeTls {
    /// Loads node `id`'s certificate, key and the CA; every error names the file.
    pub fn load(paths: &TlsPaths, id: u64) -> Result<Arc<NodeTls>> {
        Ok(Arc::new(NodeTls {
            paths: paths.clone(),
            id,
            current: RwLock::new(load(paths, id)?),
        }))
    }

    /// Reads the files again; on an error the configurations in use stay.
    pub fn reload(&self) -> Result<()> {
        let fresh = load(&self.paths, self.id)?;
        *self.current.write().expect("tls lock") = fresh;
        Ok(())
    }

    /// The configuration a peer connection is made with.
    pub fn peer_client(&self) -> Arc<rustls::ClientConfig> {
        self.current.read().expect("tls lock").peer_client.clone()
    }

    fn server(&self, port: Port) -> Arc<rustls::ServerConfig> {
        let c = self.current.read().expect("tls lock");
        match port {
            Port::Peer => c.peer_server.clone(),
            Port::Api => c.api_server.clone(),
            Port::Http => c.http_server.clone(),
        }
    }
}

/// How long a connection may send nothing before it is closed (`connection_idle_ms`), set
/// once when the node starts.
static CONNECTION_IDLE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

/// Sets the idle timeout of every connection this process accepts (the first call wins).
pub fn set_connection_idle(idle: Duration) {
    let _ = CONNECTION_IDLE.set(idle);
}

/// The idle timeout of accepted connections.
pub fn connection_idle() -> Duration {
    *CONNECTION_IDLE
        .get_or_init(|| Duration::from_millis(crate::machine::limits::CONNECTION_IDLE_MS_DEFAULT))
}

/// An accepted connection, plain or TLS, as tonic serves it. It holds one of its server's
/// connection slots until dropped, and ends with a TimedOut error once it has sent nothing
/// for [`connection_idle`].
pub struct Conn {
    io: ServerIo,
    _slot: tokio::sync::OwnedSemaphorePermit,
    idle: Pin<Box<tokio::time::Sleep>>,
    last_read: tokio::time::Instant,
}

impl Conn {
    fn new(io: ServerIo, slot: tokio::sync::OwnedSemaphorePermit) -> Conn {
        Conn {
            io,
            _slot: slot,
            idle: Box::pin(tokio::time::sleep(connection_idle())),
            last_read: tokio::time::Instant::now(),
        }
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        match &self.io {
            ServerIo::Plain(tcp) => tcp.peer_addr().ok(),
            ServerIo::Tls(tls) => tls.get_ref().0.peer_addr().ok(),
        }
    }

    /// A plain connection holding `slot`.
    pub fn plain(tcp: TcpStream, slot: tokio::sync::OwnedSemaphorePermit) -> Conn {
        Conn::new(ServerIo::Plain(tcp), slot)
    }

    /// Whether the connection has sent nothing for the idle timeout; re-arms the timer
    /// otherwise (only when it fires, so reads don't touch the timer wheel).
    fn idle_out(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if std::future::Future::poll(self.idle.as_mut(), cx).is_pending() {
                return false;
            }
            let deadline = self.last_read + connection_idle();
            if deadline <= tokio::time::Instant::now() {
                return true;
            }
            self.idle.as_mut().reset(deadline);
        }
    }
}

enum ServerIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match &self.io {
            ServerIo::Plain(tcp) => tcp.connect_info(),
            ServerIo::Tls(tls) => tls.get_ref().0.connect_info(),
        }
    }
}

/// Calls `$method` on whichever stream `$self` holds.
macro_rules! on_io {
    ($self:expr, $method:ident($($arg:expr),*)) => {
        match &mut $self.io {
            ServerIo::Plain(s) => Pin::new(s).$method($($arg),*),
            ServerIo::Tls(s) => Pin::new(s.as_mut()).$method($($arg),*),
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match on_io!(self, poll_read(cx, buf)) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.last_read = tokio::time::Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.idle_out(cx) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection idle past connection_idle_ms",
            ))),
            other => other,
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        on_io!(self, poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        on_io!(self, poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        on_io!(self, poll_shutdown(cx))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        on_io!(self, poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            ServerIo::Plain(s) => s.is_write_vectored(),
            ServerIo::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Accepts connections on `listener`, at most `max` open at once: one more is closed at once
/// (said in the log at most once a minute), so a flood of idle connections can't take every
/// file descriptor of the node. With `tls` (the node's files and which port this is) each handshake runs in its own task under [`HANDSHAKE_TIMEOUT`].
/// The stream ends when the server drops it.
pub fn incoming(
    listener: TcpListener,
    tls: Option<(Arc<NodeTls>, Port)>,
    max: usize,
) -> impl futures::Stream<Item = std::io::Result<Conn>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    tokio::spawn(async move {
        let mut last_warning: Option<std::time::Instant> = None;
        loop {
            let (tcp, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = tx.closed() => return,
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    last_warning = Some(std::time::Instant::now());
                    tracing::warn!(
                        %remote, max,
                        "connection refused: {max} open on this port, the limit"
                    );
                }
                drop(tcp);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let Some((tls, port)) = &tls else {
                let _ = tx.send(Ok(Conn::plain(tcp, slot))).await;
                continue;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.server(*port));
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let conn = Conn::new(ServerIo::Tls(Box::new(stream)), slot);
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%remote, "TLS handshake refused: {e}"),
                    Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream_from(rx)
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A connector for tonic channels that speaks TLS with `config`, leaving from `local_ip` when
/// given; the server's name is the IP address dialled.
#[derive(Clone)]
pub struct Connector {
    config: Arc<dyn Fn() -> Arc<rustls::ClientConfig> + Send + Sync>,
    local_ip: Option<IpAddr>,
}

impl Connector {
    /// A connector taking the current configuration from `config` at each connect.
    pub fn new(
        config: impl Fn() -> Arc<rustls::ClientConfig> + Send + Sync + 'static,
        local_ip: Option<IpAddr>,
    ) -> Connector {
        Connector {
            config: Arc::new(config),
            local_ip,
        }
    }
}

type Io = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

/// Says what a refused server certificate most likely means.
fn handshake_error(e: std::io::Error) -> std::io::Error {
    let certificate = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
    let hint = if certificate {
        " (the node's certificate is not one the trusted CA issued, or it is out of date: \
         clients name the cluster's CA with --ca-file or RAFTLINE_CA_FILE)"
    } else {
        ""
    };
    std::io::Error::new(e.kind(), format!("TLS handshake: {e}{hint}"))
}

impl tower::Service<http::Uri> for Connector {
    type Response = Io;
    type Error = std::io::Error;
    type Future = futures::future::BoxFuture<'static, std::io::Result<Io>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = (self.config)();
        let local_ip = self.local_ip;
        Box::pin(async move {
            let addr: SocketAddr = uri
                .authority()
                .and_then(|a| a.as_str().parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("{uri} is not ip:port")))?;
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            if let Some(ip) = local_ip {
                socket.bind(SocketAddr::new(ip, 0))?;
            }
            socket.set_nodelay(true)?;
            let tcp = socket.connect(addr).await?;
            let name = ServerName::IpAddress(addr.ip().into());
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(handshake_error)?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}

/// `GET path` from a node's HTTP port at `addr` (HTTP/1.1; over TLS checked against `ca_file`
/// when given): the body of a 200 reply, else the status line as the error. For tools and
/// tests reading `/health` and `/metrics`.
pub async fn http_get(addr: &str, path: &str, ca_file: Option<&Path>) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fail = |e: std::io::Error| Error::Unavailable {
        message: format!("{addr}: {e}"),
        leader: None,
    };
    let target: SocketAddr = addr
        .parse()
        .map_err(|_| Error::Config(format!("{addr:?} is not ip:port")))?;
    let tcp = TcpStream::connect(target).await.map_err(fail)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut response = Vec::new();
    match ca_file {
        Some(ca) => {
            let mut config = (*client_config(ca, None)?).clone();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = ServerName::IpAddress(target.ip().into());
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| fail(handshake_error(e)))?;
            tls.write_all(request.as_bytes()).await.map_err(fail)?;
            // A server may close without a TLS close_notify once the reply is sent.
            match tls.read_to_end(&mut response).await {
                Err(e) if e.kind() != std::io::ErrorKind::UnexpectedEof || response.is_empty() => {
                    return Err(fail(e))
                }
                _ => {}
            }
        }
        None => {
            let mut tcp = tcp;
            tcp.write_all(request.as_bytes()).await.map_err(fail)?;
            tcp.read_to_end(&mut response).await.map_err(fail)?;
        }
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200") {
        return Err(Error::Internal(format!("{addr}{path}: {status}")));
    }
    Ok(body.to_string())
}

/// Files `certs init` writes for `ids` into `dir`: the CA, and per node a certificate for its
/// addresses (and `localhost`) signed by it. Refuses to overwrite an existing CA.
pub fn init_certs(dir: &Path, nodes: &[(u64, Vec<IpAddr>)]) -> Result<Vec<PathBuf>> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose, SanType,
    };
    let ca_path = dir.join("ca.pem");
    if ca_path.exists() {
        return Err(Error::Config(format!(
            "{} exists; certs init does not overwrite a CA (remove the directory to start over)",
            ca_path.display()
        )));
    }
    let fail = |e: rcgen::Error| Error::Internal(format!("certificate generation: {e}"));
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Config(format!("cannot create {}: {e}", dir.display())))?;
    let ca_key = KeyPair::generate().map_err(fail)?;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "raftline cluster CA");
    ca.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let ca_cert = ca.self_signed(&ca_key).map_err(fail)?;
    let mut written = vec![];
    let write = |path: PathBuf, text: &str, private: bool, written: &mut Vec<PathBuf>| {
        write_private(&path, text, private)?;
        written.push(path);
        Ok::<_, Error>(())
    };
    write(ca_path, &ca_cert.pem(), false, &mut written)?;
    write(
        dir.join("ca-key.pem"),
        &ca_key.serialize_pem(),
        true,
        &mut written,
    )?;
    for (id, ips) in nodes {
        let key = KeyPair::generate().map_err(fail)?;
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), format!("node-{id}")])
                .map_err(fail)?;
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params
            .distinguished_name
            .push(DnType::CommonName, format!("raftline node {id}"));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_after = rcgen::date_time_ymd(2035, 1, 1);
        let cert = params.signed_by(&key, &ca_cert, &ca_key).map_err(fail)?;
        write(
            dir.join(format!("node-{id}.pem")),
            &cert.pem(),
            false,
            &mut written,
        )?;
        write(
            dir.join(format!("node-{id}-key.pem")),
            &key.serialize_pem(),
            true,
            &mut written,
        )?;
    }
    Ok(written)
}

fn write_private(path: &Path, text: &str, private: bool) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    let fail = |e: std::io::Error| Error::Config(format!("cannot write {}: {e}", path.display()));
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)
}
