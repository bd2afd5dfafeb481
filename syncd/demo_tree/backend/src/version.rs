pub const VERSION: &str = "1";
