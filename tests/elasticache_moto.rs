//! The ElastiCache backend against moto (written next).
