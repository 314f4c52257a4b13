//! The ElastiCache backend under faults, through aws-smithy-mocks (written next).
