//! The production driver (glommio, one executor per core). Built by the
//! node-runtime issue; empty until then. Only this module may name glommio.
