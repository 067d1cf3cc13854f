//! Teams: who belongs to a business, and how people join one.

pub mod business;
pub mod invitations;
pub mod members;
