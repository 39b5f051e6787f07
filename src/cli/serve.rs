//! `regauth serve`: load the settings and run the service until a signal stops it.

use std::path::PathBuf;

use regauth::config;
use regauth::server::Application;

pub(super) fn serve(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = config::load(config_path.as_deref())?;
    regauth::telemetry::logging::set_format(config.log_format);
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(config)?;
        app.run_until_stopped().await?;
        Ok(())
    })
}
