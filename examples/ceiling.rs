//! The machine's ceiling for `make bench`: an actix-web server that answers a join like
//! queuegate's front door does (parses and checks the JSON body, answers 202 with a small JSON
//! body) but without Kafka, Redis or any other work. The ratio of queuegate's throughput to this
//! one shows what the durable path costs.
//!
//!   cargo run --release --example ceiling -- 127.0.0.1:18080

use actix_web::{web, App, HttpResponse, HttpServer};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Join {
    user_id: String,
}

async fn join(concert: web::Path<String>, body: web::Json<Join>) -> HttpResponse {
    if queuegate::ids::UserId::parse(body.user_id.as_str()).is_err()
        || queuegate::ids::ConcertId::parse(concert.as_str()).is_err()
    {
        return HttpResponse::BadRequest().finish();
    }
    HttpResponse::Accepted().json(serde_json::json!({
        "entryId": uuid::Uuid::now_v7().to_string(),
        "concertId": concert.as_str(),
        "userId": body.user_id,
        "status": "pending",
    }))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18080".into());
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    HttpServer::new(|| App::new().route("/v1/concerts/{concertId}/queue", web::post().to(join)))
        .workers(workers)
        .backlog(4096)
        .bind(addr)?
        .run()
        .await
}
